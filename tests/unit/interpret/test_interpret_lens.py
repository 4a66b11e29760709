"""Logit lens: equal to a manual computation from transformers' hidden states, layer L equal to
the model's own next-token distribution, on GPT-2, Llama and Gemma 3 (softcapped too)."""
import numpy as np
import pytest
import torch
from interpret_helpers import KINDS, save_variant

from workbench.errors import InvalidInputError, UnsupportedModelError
from workbench.interpret.lens import logit_lens

TEXT = "The capital of France is Paris. The capital of"


def manual_lens(model, ids):
    """Each layer's stream through the final norm and LM head, written out per architecture."""
    m = model.module
    with torch.no_grad():
        out = m(input_ids=torch.tensor([ids]), output_hidden_states=True)
        hs = out.hidden_states
        norm = m.transformer.ln_f if hasattr(m, "transformer") else m.model.norm
        probs = []
        for layer in range(1, len(hs)):
            h = hs[layer][0]
            logits = m.lm_head(h if layer == len(hs) - 1 else norm(h))
            cap = getattr(m.config, "final_logit_softcapping", None)
            if cap:
                logits = torch.tanh(logits / cap) * cap
            probs.append(torch.softmax(logits, -1))
    return torch.stack(probs).numpy(), torch.softmax(out.logits[0], -1).numpy()


def check_against_manual(model, text=TEXT):
    result = logit_lens(model, text, top_k=4)
    ids = result.token_ids
    probs, real = manual_lens(model, ids)
    L, T, _ = probs.shape
    assert result.top_ids.shape == (L, T, 4)
    expected_top = np.sort(probs, -1)[..., ::-1][..., :4]
    np.testing.assert_allclose(result.top_probs, expected_top, atol=1e-6)
    np.testing.assert_allclose(np.take_along_axis(probs, result.top_ids, -1), result.top_probs, atol=1e-6)
    # layer L is the model's real next-token distribution
    np.testing.assert_allclose(probs[-1], real, atol=1e-6)
    np.testing.assert_array_equal(result.final_ids, real.argmax(-1))
    np.testing.assert_allclose(result.target_prob[:, -1], probs[:, -1, result.target_id], atol=1e-6)
    ranks = (probs[:, -1] > probs[:, -1, [result.target_id]]).sum(-1) + 1
    np.testing.assert_array_equal(result.target_rank[:, -1], ranks)
    return result, probs


@pytest.mark.parametrize("kind", KINDS)
def test_lens_equals_manual_computation(load, kind):
    result, probs = check_against_manual(load(kind))
    first = result.first_top1()
    top1 = probs.argmax(-1)
    for i in range(probs.shape[1]):
        assert first[i] == 1 + int(np.argmax(top1[:, i] == top1[-1, i]))


def test_gemma_softcapping_is_applied(tiny_store, tiny_model_dirs, tmp_path, load):
    path = save_variant(tiny_model_dirs["gemma3"], tmp_path / "capped", config={"final_logit_softcapping": 0.5})
    tiny_store.add("tiny-gemma-capped", local_dir=path)
    model = load("tiny-gemma-capped")
    assert model.module.config.final_logit_softcapping == 0.5
    _, probs = check_against_manual(model)
    assert probs.max() < 0.05  # a cap of 0.5 keeps every logit within ±0.5: nearly flat


def test_target_by_string_and_json(load):
    model = load("llama")
    result = logit_lens(model, TEXT, target=" Paris", top_k=3)
    paris = model.tokenizer(" Paris", add_special_tokens=False)["input_ids"]
    assert len(paris) == 1 and result.target_id == paris[0] and result.target_token == "␣Paris"
    data = result.to_json()
    L, T = result.num_layers, len(result.token_ids)
    assert data["layers"] == [1, 2] and len(data["top"]) == L and len(data["top"][0]) == T
    assert set(data["top"][-1][-1][0]) == {"id", "token", "prob"} and len(data["top"][0][0]) == 3


def test_bad_input_says_how_to_fix(load, tiny_store):
    model = load("llama")
    with pytest.raises(InvalidInputError, match="empty"):
        logit_lens(model, "   ")
    with pytest.raises(InvalidInputError, match="not one"):
        logit_lens(model, TEXT, target="capital of France")
    capped = logit_lens(model, "word " * 300, max_tokens=10_000)  # the context (128) caps it
    assert len(capped.token_ids) == 128 and "reads only its last 128" in capped.note
    card = tiny_store.cards_dir / "tiny-gpt2.toml"
    card.write_text(card.read_text().replace('"attention", ', "").replace(', "attention"', ""))
    tiny_store.catalog.reload()
    from workbench.runtime.loading import load_model, unload

    unload()
    with pytest.raises(UnsupportedModelError, match="capability"):
        logit_lens(load_model("tiny-gpt2", store=tiny_store, attn_implementation="eager"), TEXT)


def test_long_text_is_capped_with_a_note(tiny_store, long_model_dir):
    from workbench.runtime.loading import load_model

    tiny_store.add("tiny-long", local_dir=long_model_dir)
    model = load_model("tiny-long", store=tiny_store, attn_implementation="eager")
    text = "The quick brown fox jumps over the lazy dog. " * 200
    assert len(model.tokenizer(text)["input_ids"]) >= 2000
    result = logit_lens(model, text, max_positions=64, max_tokens=1500)
    assert result.top_ids.shape[1] == 64 and len(result.token_ids) == 1500
    assert "last 1,500" in result.note and "last 64" in result.note


def test_cjk_emoji_and_markup_tokens(load):
    model = load("gemma3")
    result = logit_lens(model, "日本語のテキスト。 Emoji 🙂 and <script>alert(1)</script>")
    assert any("🙂" in t for t in result.tokens) and any("<" in t for t in result.tokens)
    check_against_manual(model, "日本語 🙂")
