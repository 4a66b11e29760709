"""attention(): numerics against transformers' eager attention, tokens, summaries, long inputs."""
import numpy as np
import pytest
import torch

from workbench import attention as attn
from workbench.errors import InvalidInputError, UnsupportedModelError
from workbench.runtime.loading import load_model

KINDS = ("gpt2", "llama", "gemma3")
TEXT = "The capital of France is Paris.\nOnce upon a time there was a small model."


@pytest.fixture(params=KINDS)
def model(request, tiny_store):
    return load_model(f"tiny-{request.param}", store=tiny_store, device="cpu", attn_implementation="eager")


def reference(model, ids):
    """A separate copy of the model, loaded from disk by transformers alone."""
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(model.path, attn_implementation="eager").eval()
    with torch.no_grad():
        out = ref(torch.tensor([ids]), output_attentions=True)
    return np.stack([a[0].numpy() for a in out.attentions]), out.logits[0, -1]


def test_weights_match_transformers_eager(model):
    result = attn.attention(model, TEXT)
    ref, logits = reference(model, result.token_ids)
    assert result.weights.dtype == np.float32
    assert result.weights.shape == ref.shape  # (layers, query heads, query, key)
    np.testing.assert_allclose(result.weights, ref, atol=1e-5)
    np.testing.assert_allclose(result.weights.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(result.weights, k=1) == 0)  # nothing attends to the future
    probs = torch.softmax(logits, -1)
    assert result.next_tokens[0].id == int(torch.argmax(probs))
    assert result.next_tokens[0].prob == pytest.approx(float(probs.max()), abs=1e-5)


def test_grouped_query_models_give_one_map_per_query_head(tiny_store):
    model = load_model("tiny-llama", store=tiny_store, device="cpu", attn_implementation="eager")
    result = attn.attention(model, TEXT)
    assert result.kv_heads == 2 and result.num_heads == 4


def test_gemma_layer_kinds_and_sliding_window(tiny_store):
    model = load_model("tiny-gemma3", store=tiny_store, device="cpu", attn_implementation="eager")
    result = attn.attention(model, TEXT)
    assert result.layer_kinds == ("sliding", "full") and result.sliding_window == 4
    sliding, full = result.weights[0], result.weights[1]
    q, k = np.indices(sliding.shape[-2:])
    assert np.all(sliding[:, q - k >= 4] == 0)  # outside the window
    assert np.all(full[:, 10, :10] > 0)
    assert result.kind_label(0) == "sliding, window 4"


def test_only_chosen_layers_are_kept(model):
    full = attn.attention(model, TEXT)
    one = attn.attention(model, TEXT, layers=[1])
    assert one.layers == (1,) and one.weights.shape[0] == 1
    np.testing.assert_array_equal(one.head(1, 2), full.head(1, 2))
    with pytest.raises(InvalidInputError, match="was not kept"):
        one.head(0, 0)
    with pytest.raises(InvalidInputError, match="layers 0–1"):
        attn.attention(model, TEXT, layers=[7])


def test_tokens_read_like_text(model):
    result = attn.attention(model, "Hello world\nnext\tline")
    joined = "".join(result.tokens)
    assert joined == "Hello␣world↵next⇥line"
    assert not any("Ġ" in t or "▁" in t or "Ċ" in t for t in result.tokens)


def test_split_characters_show_bytes_then_the_character(tiny_store):
    model = load_model("tiny-gpt2", store=tiny_store, device="cpu", attn_implementation="eager")
    text = "ǅ🦜"  # not in the tiny tokenizer's training text: byte tokens
    ids = model.tokenizer(text)["input_ids"]
    labels = attn.display_tokens(model.tokenizer, ids)
    assert len(labels) == len(ids) > 2
    assert labels[-1].endswith("🦜") and labels[0].startswith("‹")
    assert "".join(x for x in labels if not x.startswith("‹")) in ("ǅ🦜", "🦜")


def test_control_characters_are_visible():
    assert attn.make_visible("a b\nc\td\x00\x1b\x7f") == "a␣b↵c⇥d␀␛␡"


def test_sentencepiece_style_tokens():
    class SP:
        all_special_tokens = ["<bos>"]
        backend_tokenizer = None

        def convert_ids_to_tokens(self, ids):
            table = {0: "<bos>", 1: "▁Hello", 2: "▁wor", 3: "ld", 4: "<0x0A>",
                     5: "<0xF0>", 6: "<0x9F>", 7: "<0x99>", 8: "<0x82>"}
            return [table[i] for i in ids]

    assert attn.display_tokens(SP(), range(9)) == [
        "<bos>", "␣Hello", "␣wor", "ld", "↵", "‹f0›", "‹9f›", "‹99›", "🙂"]
    assert attn.display_tokens(SP(), [1, 6, 3]) == ["␣Hello", "‹9f›", "ld"]  # a stray byte is not UTF-8


def test_sdpa_model_is_refused_with_the_fix(tiny_store):
    model = load_model("tiny-llama", store=tiny_store, device="cpu", attn_implementation="sdpa")
    with pytest.raises(UnsupportedModelError, match="attn_implementation='eager'"):
        attn.attention(model, TEXT)


def test_empty_and_too_long_texts(tiny_store):
    model = load_model("tiny-gpt2", store=tiny_store, device="cpu", attn_implementation="eager")
    with pytest.raises(InvalidInputError, match="empty"):
        attn.attention(model, "  ")
    with pytest.raises(InvalidInputError, match="reads at most 128"):
        attn.attention(model, "word " * 200)


def test_memory_estimate_is_checked_before_running(tiny_store):
    model = load_model("tiny-gpt2", store=tiny_store, device="cpu", attn_implementation="eager")
    est = attn.estimate_memory(model, 100)
    assert est.weights_bytes == 2 * 4 * 100 * 100 * 4
    assert est.peak_bytes > est.weights_bytes
    fits = attn.max_tokens_within(model, est.peak_bytes)
    assert fits in (99, 100)
    with pytest.raises(InvalidInputError, match="shorten the text to about"):
        attn.attention(model, TEXT, budget_bytes=10_000)
    small = attn.attention(model, TEXT, budget_bytes=10**9)
    assert small.memory.fits


def test_hooks_are_removed_and_results_repeat(model):
    a = attn.attention(model, TEXT)
    modules = attn.attention_modules(model.module)
    assert all(not m._forward_hooks for m in modules)
    b = attn.attention(model, TEXT)
    np.testing.assert_array_equal(a.weights, b.weights)


def test_npz_round_trip(tmp_path, model):
    result = attn.attention(model, TEXT)
    path = attn.save_npz(result, tmp_path / "a.npz")
    data = np.load(path)
    assert data["weights"].dtype == np.float32
    np.testing.assert_array_equal(data["weights"], result.weights)
    assert list(data["tokens"]) == result.tokens
