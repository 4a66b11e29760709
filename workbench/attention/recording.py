"""Attention while generating: a torch backend that records, at every step, the attention row of
the position it fed, and the two ways to use it (replaying a finished generation, or generating
with the recorder as the backend)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Sequence

import numpy as np
import torch
from transformers import DynamicCache

from ..errors import InvalidInputError
from ..runtime.backends.torch_eager import TorchBackend
from .maps import capture, check_length
from .results import GenerationAttention
from .structure import check_eager, model_shape
from .tokens import display_tokens


class RecordingBackend(TorchBackend):
    """A ``TorchBackend`` that records, at every step, the attention row of the last position fed.
    Use one per generation (it keeps the rows) inside ``recording()``."""

    name = "torch-attention"

    def __init__(self, model):
        check_eager(model)
        super().__init__(model)
        self.rows: list[np.ndarray] = []
        self._found: dict[int, list[np.ndarray]] | None = None

    def _record(self) -> None:
        last = [self._found[i].pop()[:, -1, :] for i in sorted(self._found)]  # each (heads, key)
        self.rows.append(np.stack(last).astype(np.float32))

    def new_cache(self):
        # A cache without per-layer window trimming keeps every key, so rows have full length.
        return DynamicCache()

    def after_forward(self) -> None:
        self._record()

    @contextmanager
    def recording(self):
        with capture(self.model) as found:
            self._found = found
            try:
                yield self
            finally:
                self._found = None


def generation_attention(model, prompt_ids: Sequence[int], token_ids: Sequence[int]) -> GenerationAttention:
    """Replay a finished generation through the KV cache, one token at a time, recording each
    generated token's attention row (``GenerationAttention``)."""
    prompt_ids, token_ids = [int(i) for i in prompt_ids], [int(i) for i in token_ids]
    if not token_ids:
        raise InvalidInputError("The generation has no new tokens to show: generate at least one.")
    check_length(model, len(prompt_ids) + len(token_ids))
    backend = RecordingBackend(model)
    with backend.recording():
        _, state = backend.prefill(torch.tensor([prompt_ids]))
        for t in token_ids[:-1]:
            _, state = backend.step(t, state)
    ids = prompt_ids + token_ids
    return GenerationAttention(model.card.id, ids, display_tokens(model.tokenizer, ids), len(prompt_ids),
                               backend.rows, model_shape(model).layer_kinds)


def generate_with_attention(model, prompt, **settings):
    """Generate (``workbench.generation`` settings) and record attention while it runs.
    Returns ``(GenerationResult, GenerationAttention)``."""
    from ..runtime.generation import Generation

    backend = RecordingBackend(model)
    with backend.recording():
        result = Generation(model, prompt, backend=backend, **settings).run()
    ids = list(result.prompt_ids) + list(result.token_ids)
    rows = backend.rows[: len(result.token_ids)]  # a step fed after an EOS has no token to predict
    return result, GenerationAttention(model.card.id, ids, display_tokens(model.tokenizer, ids),
                                       len(result.prompt_ids), rows, model_shape(model).layer_kinds)
