import pytest

from workbench.errors import InvalidInputError
from workbench.runtime.loading import load_model


@pytest.fixture
def gpt2(tiny_store):
    return load_model("tiny-gpt2", store=tiny_store, device="cpu")


def test_greedy_matches_transformers_generate(gpt2):
    import torch

    result = gpt2.generate("Once upon a time", max_new_tokens=12, stop_at_eos=False)
    ids = torch.tensor([result.prompt_ids])
    ref = gpt2.module.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12,
                               min_new_tokens=12, do_sample=False)
    assert result.token_ids == ref[0, ids.shape[1]:].tolist()
    assert len(result.tokens) == 12
    assert result.text == gpt2.tokenizer.decode(result.token_ids, skip_special_tokens=True)


def test_token_probabilities_are_the_model_distribution(gpt2):
    import torch

    result = gpt2.generate("The capital", max_new_tokens=1, stop_at_eos=False, top_alternatives=3)
    with torch.no_grad():
        logits = gpt2.module(torch.tensor([result.prompt_ids])).logits[0, -1]
    probs = torch.softmax(logits, -1)
    first = result.tokens[0]
    assert first.prob == pytest.approx(float(probs[first.id]), abs=1e-5)
    assert [a.id for a in first.top] == torch.topk(probs, 3).indices.tolist()
    assert first.top[0].id == first.id  # greedy picks the most likely token


def test_sampling_is_reproducible_by_seed(gpt2):
    a = gpt2.generate("Once", do_sample=True, temperature=1.5, seed=7, max_new_tokens=10, stop_at_eos=False)
    b = gpt2.generate("Once", do_sample=True, temperature=1.5, seed=7, max_new_tokens=10, stop_at_eos=False)
    c = gpt2.generate("Once", do_sample=True, temperature=1.5, seed=8, max_new_tokens=10, stop_at_eos=False)
    assert a.token_ids == b.token_ids
    assert a.token_ids != c.token_ids


def test_streaming_pieces_join_to_the_text(gpt2):
    generation = gpt2.stream("日本語 🙂", max_new_tokens=10, stop_at_eos=False)
    pieces = list(generation)
    assert "".join(pieces) == generation.result.text
    assert generation.result.ttft_ms > 0 and generation.result.tokens_per_s > 0


def test_chat_uses_the_template(tiny_store):
    model = load_model("tiny-llama", store=tiny_store, device="cpu")
    result = model.generate("Hi there", chat=True, max_new_tokens=4, stop_at_eos=False)
    assert result.prompt.startswith("<|im_start|>user\nHi there<|im_end|>")
    assert result.prompt.endswith("<|im_start|>assistant\n")


def test_chat_on_a_base_model_says_to_turn_it_off(gpt2):
    with pytest.raises(InvalidInputError, match="chat mode off"):
        gpt2.generate("Hi", chat=True)


@pytest.mark.parametrize(
    "prompt, settings, message",
    [
        ("", {}, "empty"),
        ("   \n", {}, "empty"),
        ("hi", {"max_new_tokens": 0}, "at least 1"),
        ("hi", {"max_new_tokens": -5}, "at least 1"),
        ("hi", {"max_new_tokens": 10**6}, "at most"),
        ("hi", {"do_sample": True, "temperature": 0.0}, "Temperature 0"),
        ("hi", {"top_p": 0.0}, "Top-p"),
        ("hi", {"bogus": 1}, "Unknown generation settings"),
        ("word " * 200, {}, "reads at most 128"),
        ("hi", {"max_new_tokens": 200}, "max new tokens to at most"),
        ("x" * 300_000, {}, "characters"),
    ],
)
def test_bad_input_says_how_to_fix_it(gpt2, prompt, settings, message):
    with pytest.raises(InvalidInputError, match=message):
        gpt2.generate(prompt, **settings)


def test_repetition_penalty_changes_greedy_output(gpt2):
    plain = gpt2.generate("The the the", max_new_tokens=8, stop_at_eos=False)
    penalized = gpt2.generate("The the the", max_new_tokens=8, stop_at_eos=False, repetition_penalty=5.0)
    assert plain.token_ids != penalized.token_ids
