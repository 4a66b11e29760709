"""What the attention functions return, as plain numpy data: ``AttentionResult`` (one text, every
kept layer's maps), ``GenerationAttention`` (the rows of generated tokens) and ``Prediction``.
No torch: views and notebooks can read saved results without loading a model."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError
from .budget import MemoryEstimate
from .structure import SLIDING

@dataclass(frozen=True)
class Prediction:
    token: str
    id: int
    prob: float


@dataclass
class AttentionResult:
    """Attention of one text. ``weights[i]`` belongs to model layer ``layers[i]``."""

    model: str
    token_ids: list[int]
    tokens: list[str]
    weights: np.ndarray  # float32 (layers kept, heads, query, key)
    layers: tuple[int, ...]
    layer_kinds: tuple[str, ...]  # FULL | SLIDING per kept layer
    sliding_window: int | None
    kv_heads: int
    next_tokens: list[Prediction] = field(default_factory=list)
    forward_ms: float = 0.0
    memory: MemoryEstimate | None = None

    @property
    def num_tokens(self) -> int:
        return len(self.tokens)

    @property
    def num_heads(self) -> int:
        return int(self.weights.shape[1])

    def index(self, layer: int) -> int:
        """Row of ``weights`` holding model layer ``layer``."""
        try:
            return self.layers.index(layer)
        except ValueError:
            raise InvalidInputError(f"Layer {layer} was not kept; kept layers: {list(self.layers)}.") from None

    def head(self, layer: int, head: int) -> np.ndarray:
        """``(query, key)`` map of one head of model layer ``layer``."""
        if not 0 <= head < self.num_heads:
            raise InvalidInputError(f"Head {head} does not exist: heads are 0–{self.num_heads - 1}.")
        return self.weights[self.index(layer), head]

    def kind_label(self, layer: int) -> str:
        kind = self.layer_kinds[self.index(layer)]
        return f"sliding, window {self.sliding_window}" if kind == SLIDING else "full"

    def save_npz(self, file) -> None:
        """Write ``weights`` (float32 [layers, heads, query, key]), ``tokens``, ``token_ids``,
        ``layers`` and ``layer_kinds`` to a path or binary file object."""
        np.savez_compressed(
            file,
            weights=self.weights.astype(np.float32, copy=False),
            tokens=np.array(self.tokens, dtype=str),
            token_ids=np.array(self.token_ids, dtype=np.int64),
            layers=np.array(self.layers, dtype=np.int64),
            layer_kinds=np.array(self.layer_kinds, dtype=str),
            model=np.array(self.model),
        )

    def npz_bytes(self) -> bytes:
        import io

        buf = io.BytesIO()
        self.save_npz(buf)
        return buf.getvalue()


@dataclass
class GenerationAttention:
    """For each generated token, the attention row of the query that predicted it.

    Step ``s`` predicted ``tokens[prompt_len + s]``; its row ``rows[s]`` is
    ``(layers, heads, prompt_len + s)``: the weights of the query at position
    ``prompt_len + s - 1`` over every key up to it (the same numbers a plain forward over the
    whole sequence puts in that row)."""

    model: str
    token_ids: list[int]
    tokens: list[str]
    prompt_len: int
    rows: list[np.ndarray]
    layer_kinds: tuple[str, ...]

    @property
    def steps(self) -> int:
        return len(self.rows)

    @property
    def generated(self) -> list[str]:
        return self.tokens[self.prompt_len:]

    def step(self, s: int, layer: int) -> np.ndarray:
        """``(heads, prompt_len + s)`` weights of one layer at step ``s``."""
        if not 0 <= s < self.steps:
            raise InvalidInputError(f"Step {s} does not exist: there are {self.steps} generated tokens.")
        return self.rows[s][layer]

    def as_matrix(self, layer: int, head: int) -> np.ndarray:
        """``(steps, total keys)``: every step's row for one head, zero-padded on the right."""
        width = self.prompt_len + self.steps - 1
        out = np.zeros((self.steps, width), dtype=np.float32)
        for s, row in enumerate(self.rows):
            out[s, : row.shape[-1]] = row[layer, head]
        return out


def save_npz(result: AttentionResult, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    result.save_npz(path)
    return path
