"""Base vs tuned on a tiny Llama and a perturbed copy added through the store's custom path."""
import numpy as np
import pytest
import torch

from workbench.views import interpret as views
from workbench.interpret.compare import TokenizerMismatchError, compare

TEXT = "The capital of France is Paris. The capital of"


def test_tuned_copy_differs_and_numbers_match(load, tuned_store):
    base, tuned = load("tiny-llama"), load("tiny-llama-tuned")
    c = compare(base, tuned, TEXT)
    ids = torch.tensor([c.token_ids])
    with torch.no_grad():
        p = torch.log_softmax(base.module(input_ids=ids).logits[0, -1], -1)
        q = torch.log_softmax(tuned.module(input_ids=ids).logits[0, -1], -1)
    assert c.kl == pytest.approx(float((p.exp() * (p - q)).sum()), rel=1e-4) and c.kl > 0
    assert c.rose and c.fell and all(r.delta > 0 for r in c.rose) and all(f.delta < 0 for f in c.fell)
    assert c.rose[0].tuned_prob == pytest.approx(float(q.exp()[c.rose[0].id]), abs=1e-6)
    L, P = c.lens_kl.shape
    assert (L, P) == (2, len(c.token_ids)) and (c.lens_kl >= 0).all()
    assert c.lens_kl[-1, -1] == pytest.approx(c.kl, rel=1e-4)  # layer L, last position: the real outputs
    assert c.head_change.shape == (2, 4) and (c.head_change > 0).any() and (c.head_change <= 1).all()
    for fig in (views.changes_figure(c), views.lens_difference(c), views.head_change_figure(c)):
        assert fig.data
    assert "KL" in views.changes_figure(c).layout.title.text


def test_identical_copy_shows_no_change(load, tuned_store):
    c = compare(load("tiny-llama"), load("tiny-llama-copy"), TEXT)
    assert c.kl == pytest.approx(0, abs=1e-6)
    np.testing.assert_allclose(c.lens_kl, 0, atol=1e-5)
    np.testing.assert_allclose(c.head_change, 0, atol=1e-3)


def test_different_tokenizers_are_refused(load, tuned_store):
    with pytest.raises(TokenizerMismatchError, match="different tokenizers"):
        compare(load("tiny-llama"), load("tiny-llama-othertok"), TEXT)


def test_different_architectures_with_one_tokenizer(load):
    c = compare(load("tiny-llama"), load("tiny-gpt2"), TEXT)  # the tiny models share a tokenizer
    assert c.kl > 0 and c.head_change.shape == (2, 4)
