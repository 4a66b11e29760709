"""Summaries of attention maps and the reductions that keep long maps drawable, on numpy arrays:
the mean over heads, rollout, per-head statistics, block downsampling and top-k edges (each
reduction carries a note of what it reduced)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .results import AttentionResult


def mean_over_heads(weights: np.ndarray) -> np.ndarray:
    """``(layers, heads, q, k)`` -> ``(layers, q, k)``; rows still sum to 1."""
    return weights.mean(axis=1)


def rollout(weights: np.ndarray, residual: float = 0.5) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema, 2020) over the given layers, first to last.

    Each layer's head-mean map is mixed with the identity for the residual stream,
    ``A' = residual * I + (1 - residual) * A``, and the layers are multiplied:
    ``R = A'_L ... A'_1``. Returns ``(q, k)``; rows sum to 1."""
    n = weights.shape[-1]
    eye = np.eye(n, dtype=np.float32)
    result = eye.copy()
    for layer in mean_over_heads(weights):
        mixed = residual * eye + (1 - residual) * layer
        mixed /= mixed.sum(axis=-1, keepdims=True)
        result = mixed @ result
    return result


@dataclass(frozen=True)
class HeadStats:
    """Per head, ``(layers kept, heads)`` arrays averaged over query positions.

    ``entropy``: bits of each attention row (0 = all weight on one token). ``first_token``:
    weight on position 0 (queries 1.. only; query 0 can only look at itself). ``prev_token``:
    weight on the token just before the query (queries 1..)."""

    layers: tuple[int, ...]
    entropy: np.ndarray
    first_token: np.ndarray
    prev_token: np.ndarray

    METRICS = ("entropy", "first_token", "prev_token")


def head_stats(result: AttentionResult) -> HeadStats:
    """One layer at a time, so a long text needs no second copy of its weights."""
    w = result.weights
    L, H, T, _ = w.shape
    entropy = np.zeros((L, H), dtype=np.float64)
    for i in range(L):
        layer = w[i]
        plogp = np.zeros_like(layer)
        np.log2(layer, out=plogp, where=layer > 0)
        plogp *= layer
        entropy[i] = -plogp.sum(-1, dtype=np.float64).mean(-1)
    if T > 1:
        first = w[..., 1:, 0].mean(-1)
        q = np.arange(1, T)
        prev = w[..., q, q - 1].mean(-1)
    else:
        first = w[..., 0, 0]
        prev = np.zeros(w.shape[:2])
    return HeadStats(result.layers, entropy.astype(np.float32), first.astype(np.float32), prev.astype(np.float32))


@dataclass(frozen=True)
class Reduced:
    """A map made small enough to draw. ``note`` says what was reduced ("" when nothing)."""

    matrix: np.ndarray  # (rows, cols)
    row_labels: list[str]
    col_labels: list[str]
    note: str


def position_labels(tokens: Sequence[str], start: int = 0) -> list[str]:
    """Unique axis labels ``"3 ␣the"``: plotly merges equal category labels, tokens repeat."""
    return [f"{start + i} {t}" for i, t in enumerate(tokens)]


def _block_labels(tokens: Sequence[str], edges: np.ndarray) -> list[str]:
    labels = []
    for a, b in zip(edges[:-1], edges[1:]):
        a, b = int(a), int(b)
        labels.append(f"{a} {tokens[a]}" if b - a == 1 else f"{a}–{b - 1} {tokens[a]}…{tokens[b - 1]}")
    return labels


def downsample(matrix: np.ndarray, tokens: Sequence[str], max_size: int = 64) -> Reduced:
    """Shrink a ``(T, T)`` map to at most ``max_size`` blocks a side by block averaging.

    Cell (i, j) is the mean over the queries of block i of the total weight they give the keys
    of block j, so rows still sum to 1."""
    n = matrix.shape[-1]
    if n <= max_size:
        labels = position_labels(tokens)
        return Reduced(matrix, labels, labels, "")
    edges = np.linspace(0, n, max_size + 1).round().astype(int)
    summed = np.add.reduceat(np.add.reduceat(matrix, edges[:-1], axis=1), edges[:-1], axis=0)
    counts = np.diff(edges)[:, None]
    labels = _block_labels(tokens, edges)
    size = n / max_size
    note = (f"{n} tokens drawn as {max_size}×{max_size} blocks of about {size:.1f} tokens: a cell is the "
            "mean over the block's queries of their total weight on the block's keys.")
    return Reduced((summed / counts).astype(np.float32), labels, labels, note)


@dataclass(frozen=True)
class Edges:
    """The ``k`` strongest keys of every query of a ``(T, T)`` map, as parallel arrays."""

    query: np.ndarray
    key: np.ndarray
    weight: np.ndarray
    kept_share: float  # weight kept / total weight
    note: str


def top_k_edges(matrix: np.ndarray, k: int = 5) -> Edges:
    n = matrix.shape[-1]
    k = max(1, min(k, n))
    keys = np.argpartition(-matrix, k - 1, axis=-1)[:, :k]  # (T, k)
    weight = np.take_along_axis(matrix, keys, axis=-1)
    query = np.repeat(np.arange(n), k)
    keep = weight.reshape(-1) > 0
    total = float(matrix.sum()) or 1.0
    share = float(weight.sum()) / total
    note = (f"{n} tokens: showing the {k} strongest keys of each query ({keep.sum():,} of {n * n:,} cells), "
            f"which hold {share:.0%} of the attention.")
    return Edges(query[keep], keys.reshape(-1)[keep], weight.reshape(-1)[keep].astype(np.float32), share, note)
