"""Attention rows of generated tokens equal a plain forward over the full sequence."""
import numpy as np
import pytest
import torch

from workbench import attention as attn
from workbench.errors import InvalidInputError
from workbench.runtime.loading import load_model


@pytest.fixture(params=["gpt2", "llama", "gemma3"])
def model(request, tiny_store):
    return load_model(f"tiny-{request.param}", store=tiny_store, device="cpu", attn_implementation="eager")


def full_forward(model, ids):
    with torch.no_grad():
        out = model.module(torch.tensor([ids]), output_attentions=True)
    return np.stack([a[0].numpy() for a in out.attentions])  # (L, H, T, T)


def test_rows_recorded_while_generating_equal_a_full_forward(model):
    # 20 tokens > the tiny Gemma's 4-token sliding window: the cache path must keep every key
    result, gen = attn.generate_with_attention(model, "Once upon a time", max_new_tokens=20, stop_at_eos=False)
    assert gen.steps == len(result.token_ids) == 20
    assert gen.token_ids == result.prompt_ids + result.token_ids
    full = full_forward(model, gen.token_ids)
    P = gen.prompt_len
    for s in range(gen.steps):
        row = gen.rows[s]
        assert row.shape == (full.shape[0], full.shape[1], P + s)
        np.testing.assert_allclose(row, full[:, :, P + s - 1, : P + s], atol=1e-5)
        np.testing.assert_allclose(row.sum(-1), 1, atol=1e-5)


def test_replaying_a_generation_gives_the_same_rows(model):
    result = model.generate("The capital", max_new_tokens=8, stop_at_eos=False)
    gen = attn.generation_attention(model, result.prompt_ids, result.token_ids)
    full = full_forward(model, gen.token_ids)
    P = gen.prompt_len
    assert gen.steps == 8 and gen.generated == attn.display_tokens(model.tokenizer, result.token_ids)
    for s in range(gen.steps):
        np.testing.assert_allclose(gen.rows[s], full[:, :, P + s - 1, : P + s], atol=1e-5)
    m = gen.as_matrix(0, 1)
    assert m.shape == (8, P + 7)
    np.testing.assert_allclose(m[3, : P + 3], full[0, 1, P + 2, : P + 3], atol=1e-5)


def test_stopping_at_eos_keeps_one_row_per_token(tiny_store, monkeypatch):
    model = load_model("tiny-gpt2", store=tiny_store, device="cpu", attn_implementation="eager")
    plain = model.generate("Once", max_new_tokens=6, stop_at_eos=False)
    k = next(i for i, t in enumerate(plain.token_ids) if i > 0 and t not in plain.token_ids[:i])
    # make the k-th greedy token the end-of-text: generation stops before it
    monkeypatch.setattr(model.module.generation_config, "eos_token_id", plain.token_ids[k])
    result, gen = attn.generate_with_attention(model, "Once", max_new_tokens=6, stop_at_eos=True)
    assert result.finish_reason == "eos" and result.token_ids == plain.token_ids[:k]
    assert gen.steps == k
    full = full_forward(model, gen.token_ids)
    P = gen.prompt_len
    np.testing.assert_allclose(gen.rows[-1], full[:, :, P + k - 2, : P + k - 1], atol=1e-5)


def test_step_out_of_range_says_how_many(tiny_store):
    model = load_model("tiny-gpt2", store=tiny_store, device="cpu", attn_implementation="eager")
    _, gen = attn.generate_with_attention(model, "Once", max_new_tokens=3, stop_at_eos=False)
    with pytest.raises(InvalidInputError, match="3 generated tokens"):
        gen.step(3, 0)
