"""Summaries and reductions on hand-made maps, where the right answer is known."""
import numpy as np
import pytest

from workbench import attention as attn


def causal_uniform(n):
    m = np.tril(np.ones((n, n), dtype=np.float32))
    return m / m.sum(-1, keepdims=True)


def fake_result(weights, tokens=None):
    L, H, T, _ = weights.shape
    return attn.AttentionResult("fake", list(range(T)), tokens or [f"t{i}" for i in range(T)],
                                weights.astype(np.float32), tuple(range(L)), ("full",) * L, None, H)


def test_head_stats_on_known_heads():
    n = 6
    first = np.zeros((n, n), np.float32)
    first[:, 0] = 1
    prev = np.eye(n, k=-1, dtype=np.float32)
    prev[0, 0] = 1
    uniform = causal_uniform(n)
    stats = attn.head_stats(fake_result(np.stack([[first, prev, uniform]])))
    np.testing.assert_allclose(stats.first_token[0], [1, 0.2, np.mean([1 / (q + 1) for q in range(1, n)])], atol=1e-6)
    np.testing.assert_allclose(stats.prev_token[0], [0.2, 1, np.mean([1 / (q + 1) for q in range(1, n)])], atol=1e-6)
    assert stats.entropy[0, 0] == 0 and stats.entropy[0, 1] == 0
    assert stats.entropy[0, 2] == pytest.approx(np.mean([np.log2(q + 1) for q in range(n)]), abs=1e-5)


def test_rollout_of_identity_is_identity_and_rows_sum_to_one():
    n = 5
    eye = np.broadcast_to(np.eye(n, dtype=np.float32), (3, 2, n, n))
    np.testing.assert_allclose(attn.rollout(eye), np.eye(n), atol=1e-6)
    w = np.broadcast_to(causal_uniform(n), (3, 2, n, n))
    r = attn.rollout(w)
    np.testing.assert_allclose(r.sum(-1), 1, atol=1e-5)
    # one layer, residual 0.5: 0.5 I + 0.5 A
    np.testing.assert_allclose(attn.rollout(w[:1]), 0.5 * np.eye(n) + 0.5 * causal_uniform(n), atol=1e-6)


def test_mean_over_heads():
    rng = np.random.default_rng(0)
    w = rng.random((2, 3, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(attn.mean_over_heads(w), w.mean(1))


def test_downsample_keeps_rows_summing_to_one_and_says_so():
    n = 512
    m = causal_uniform(n)
    tokens = [f"w{i}" for i in range(n)]
    red = attn.downsample(m, tokens, 64)
    assert red.matrix.shape == (64, 64)
    np.testing.assert_allclose(red.matrix.sum(-1), 1, atol=1e-4)
    assert "512 tokens drawn as 64×64 blocks" in red.note
    assert red.row_labels[0] == "0–7 w0…w7" and len(set(red.row_labels)) == 64
    small = attn.downsample(m[:10, :10], tokens[:10], 64)
    assert small.note == "" and small.matrix.shape == (10, 10)


def test_top_k_edges_keep_the_strongest_keys():
    n = 300
    m = causal_uniform(n)
    m[:, 0] += 1
    m /= m.sum(-1, keepdims=True)
    edges = attn.top_k_edges(m, 3)
    assert len(edges.query) <= 3 * n
    assert set(edges.key[edges.query == 200]) >= {0}
    assert np.all(edges.weight > 0)
    assert "3 strongest keys" in edges.note and 0 < edges.kept_share < 1


def test_labels_are_unique_when_tokens_repeat():
    labels = attn.position_labels(["␣the", "␣the", "␣the"])
    assert len(set(labels)) == 3
