"""Attention on the real default model (SmolLM2 135M, grouped-query: 9 query heads, 3 KV heads)."""
import numpy as np
import pytest
import torch

from workbench import attention as attn
from workbench.attention import ablation
from workbench.views import bertviz as bertviz_offline
from workbench.runtime.loading import load_model

pytestmark = pytest.mark.slow

TEXT = "The capital of France is"


@pytest.fixture(scope="module")
def model(real_store):
    return load_model("smollm2-135m-instruct", store=real_store, device="cpu", attn_implementation="eager")


@pytest.fixture(scope="module")
def reference(model):
    """Plain transformers, loaded on its own from the installed folder."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model.path, attn_implementation="eager").eval()


def ref_attentions(reference, ids):
    with torch.no_grad():
        out = reference(torch.tensor([ids]), output_attentions=True)
    return np.stack([a[0].numpy() for a in out.attentions])


def test_weights_match_eager_transformers(model, reference):
    result = attn.attention(model, "The capital of France is Paris.\nThe capital of Italy is")
    ref = ref_attentions(reference, result.token_ids)
    assert result.weights.shape == ref.shape == (30, 9, len(result.tokens), len(result.tokens))
    np.testing.assert_allclose(result.weights, ref, atol=1e-5)
    np.testing.assert_allclose(result.weights.sum(-1), 1, atol=1e-5)
    assert result.kv_heads == 3 and set(result.layer_kinds) == {"full"}
    assert "␣Paris" in result.tokens and "↵" in result.tokens
    assert not any("Ġ" in t or "Ċ" in t for t in result.tokens)


def test_knows_paris_and_first_token_sink(model):
    result = attn.attention(model, TEXT)
    assert result.next_tokens[0].token == "␣Paris"
    stats = attn.head_stats(result)
    assert float(stats.first_token.mean()) > 0.3  # most later layers park weight on token 0


def test_generation_rows_equal_a_full_forward(model, reference):
    result, gen = attn.generate_with_attention(model, TEXT, max_new_tokens=6, stop_at_eos=False)
    assert "Paris" in result.text
    full = ref_attentions(reference, gen.token_ids)
    P = gen.prompt_len
    for s in range(gen.steps):
        np.testing.assert_allclose(gen.rows[s], full[:, :, P + s - 1, : P + s], atol=1e-5)


def test_ablating_all_heads_of_the_last_layers_changes_the_prediction(model):
    heads = [(layer, h) for layer in range(20, 30) for h in range(9)]
    cmp = ablation.compare_next_token(model, TEXT, heads, k=5)
    assert cmp.baseline[0].token == "␣Paris"
    assert cmp.baseline_top_prob_after < cmp.rows[0][2]


def test_512_tokens_stay_usable(model):
    ids = model.tokenizer("The history of computing is a story of people. " * 80)["input_ids"][:512]
    estimate = attn.estimate_memory(model, 512)
    assert estimate.fits and estimate.weights_bytes == 30 * 9 * 512 * 512 * 4
    result = attn.attention(model, ids=ids)
    view = bertviz_offline.head_view(result)
    assert view.note and len(view.html) < 6_000_000
