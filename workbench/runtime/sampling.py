"""Turning logits into tokens: argmax, softmax with its top-k, and the sampling processors.

The one place these are written. On the CPU argmax and softmax go through numpy (see ``argmax``).
"""
from __future__ import annotations

import numpy as np
import torch


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax along ``axis`` in the input's dtype, stable for large scores; ``-inf`` (a masked
    entry) gets probability 0 as long as one entry per row is finite."""
    x = np.asarray(x)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def argmax(scores: torch.Tensor) -> int:
    """Index of the largest score (the first of equals). On the CPU through numpy: torch splits a
    vocabulary-sized argmax over its OpenMP threads, which then spin and take a core from the next
    ONNX Runtime step (a cost seen in decode timings against onnxruntime-genai)."""
    if scores.device.type == "cpu":
        return int(np.argmax(scores.numpy()))
    return int(torch.argmax(scores))


def softmax_top(logits: torch.Tensor, k: int):
    """The softmax of ``logits`` (V,) and the ids of its ``k`` largest, largest first. On the CPU
    through numpy, for the reason ``argmax`` gives."""
    k = min(k, logits.numel())
    if logits.device.type == "cpu":
        probs = softmax(logits.numpy())
        top = np.argpartition(probs, -k)[-k:]
        return probs, top[np.argsort(-probs[top], kind="stable")].tolist()
    probs = torch.softmax(logits, dim=-1)
    return probs, torch.topk(probs, k).indices.tolist()


def choose(logits: torch.Tensor, seen: torch.Tensor, config, gen) -> int:
    """Pick the next token from raw logits ``(V,)`` after the processors ``config`` (a
    ``GenerationConfig``) turns on: repetition penalty, then greedy, or temperature, top-k, top-p
    and a draw from ``gen`` (a ``torch.Generator``). ``seen``: ids the penalty applies to."""
    scores = logits
    if config.repetition_penalty != 1.0 and seen.numel():
        picked = scores[seen]
        picked = torch.where(picked < 0, picked * config.repetition_penalty, picked / config.repetition_penalty)
        scores = scores.clone()
        scores[seen] = picked
    if not config.do_sample:
        return argmax(scores)
    return sample(scores, config.temperature, config.top_k, config.top_p, gen)


def sample(scores: torch.Tensor, temperature: float, top_k: int, top_p: float, gen) -> int:
    """One draw from ``gen`` (a ``torch.Generator``) after temperature, top-k (0: off) and top-p
    (the smallest set of tokens whose probability reaches ``top_p``; 1.0: off) on ``scores`` (V,)."""
    scores = scores / temperature
    if top_k and top_k < scores.numel():
        kth = torch.topk(scores, top_k).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=True)
        probs = torch.softmax(sorted_scores, dim=-1)
        drop = probs.cumsum(-1) - probs >= top_p  # keep the first token that crosses p
        scores = scores.clone()
        scores[order[drop]] = float("-inf")
    return int(torch.multinomial(torch.softmax(scores, dim=-1).cpu(), 1, generator=gen))
