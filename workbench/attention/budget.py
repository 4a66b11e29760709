"""Memory an attention run needs, estimated before running it, and the longest text or the
layers that fit a budget (by default half the memory free now). Numbers only; no forward pass."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..common import human_bytes
from .structure import model_shape

# Leave this share of the memory that is free now for everything else.
MEMORY_SHARE = 0.5


def available_memory() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil is a dependency
        return 8 * 2**30


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes an attention run over ``tokens`` tokens needs on top of the loaded model.

    ``weights_bytes``: the float32 result ``[layers kept, heads, T, T]``. ``peak_bytes``: that plus
    one layer's eager scores (pre-softmax, softmax, a copy) and the activations of one pass."""

    tokens: int
    layers: int
    heads: int
    weights_bytes: int
    peak_bytes: int
    budget_bytes: int

    @property
    def fits(self) -> bool:
        return self.peak_bytes <= self.budget_bytes

    def describe(self) -> str:
        return (f"{self.tokens} tokens × {self.layers} layers × {self.heads} heads: the weights take "
                f"{human_bytes(self.weights_bytes)}, the run about {human_bytes(self.peak_bytes)} at its peak "
                f"(budget {human_bytes(self.budget_bytes)}).")


def estimate_memory(model, tokens: int, layers: Sequence[int] | None = None,
                    budget_bytes: int | None = None) -> MemoryEstimate:
    """Estimate before running (no forward pass). ``budget_bytes`` defaults to half the free RAM."""
    s = model_shape(model)
    kept = len(layers) if layers is not None else s.layers
    per_map = s.heads * tokens * tokens * 4
    weights = kept * per_map
    activations = tokens * s.hidden_size * 4 * 16 + s.vocab_size * 4
    peak = weights + 3 * per_map + activations
    budget = budget_bytes if budget_bytes is not None else int(available_memory() * MEMORY_SHARE)
    return MemoryEstimate(tokens, kept, s.heads, weights, peak, budget)


def max_tokens_within(model, budget_bytes: int, layers: int | None = None) -> int:
    """The longest text whose attention run fits ``budget_bytes``."""
    s = model_shape(model)
    kept = layers or s.layers
    # peak ~ (kept + 3) * heads * 4 * T^2 + 64 * hidden * T + 4 * vocab
    a, b, c = (kept + 3) * s.heads * 4, 64 * s.hidden_size, 4 * s.vocab_size - budget_bytes
    return max(int((-b + (b * b - 4 * a * c) ** 0.5) / (2 * a)), 0)


def layers_that_fit(model, tokens: int, budget_bytes: int | None = None) -> list[int]:
    """The most evenly spaced layers (first and last kept when two or more fit) whose attention
    over ``tokens`` tokens fits ``budget_bytes``; ``[]`` when not even one layer fits."""
    layers = model_shape(model).layers
    budget = budget_bytes if budget_bytes is not None else int(available_memory() * MEMORY_SHARE)
    count = layers
    while count and not estimate_memory(model, tokens, range(count), budget).fits:
        count -= 1
    if count == 0:
        return []
    return sorted(set(np.linspace(0, layers - 1, count).round().astype(int).tolist()))
