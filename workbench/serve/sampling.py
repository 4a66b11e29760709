"""Choosing the next token of one sequence from its raw logits, and the logprobs reported for it.

``SamplingParams`` is one request's decoding settings. ``choose`` draws with the request's own
``torch.Generator`` (seeded per request), so a seeded request repeats exactly when its logits do.
``token_logprobs`` reads the model's own distribution (softmax of the raw logits, temperature 1),
not the reshaped one the token was drawn from: the Generate page's numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..runtime.sampling import argmax, sample, softmax_top


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: int | None = None  # None = off; k >= 0: the chosen token plus k alternatives
    ignore_eos: bool = False

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


def choose(logits: torch.Tensor, params: SamplingParams, gen: torch.Generator | None) -> int:
    """The next token id from raw logits ``(V,)``: argmax when greedy, else temperature, top-k and
    top-p (the smallest set whose probability reaches p) then one draw from ``gen``."""
    if params.greedy:
        return argmax(logits)
    return sample(logits, params.temperature, params.top_k, params.top_p, gen)


@dataclass(frozen=True)
class TokenLogprob:
    id: int
    logprob: float
    top: tuple[tuple[int, float], ...]  # (id, logprob), most likely first


def token_logprobs(logits: torch.Tensor, token_id: int, k: int) -> TokenLogprob:
    """Log-probability of ``token_id`` and the ``k`` most likely tokens under softmax(logits)."""
    probs, top = softmax_top(logits, max(k, 1))
    top = top[:k] if k else []
    return TokenLogprob(
        token_id, _log(float(probs[token_id])), tuple((int(i), _log(float(probs[i]))) for i in top)
    )


def _log(p: float) -> float:
    return math.log(p) if p > 0 else -9999.0
