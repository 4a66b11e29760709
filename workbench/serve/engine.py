"""Engines: run one decode step for every active sequence of one model.

An engine knows the network and the KV cache, nothing about tokens' text, sampling or stopping.
Rows are identified by the order they were added; the batcher keeps the same order.

- ``add(prompt_ids) -> logits (V,)``: prefill one new sequence alone (exactly what a solo request
  does) and make it a row of the batch.
- ``step(token_ids) -> logits (B, V)``: feed each row its next token (``token_ids[i]`` for row
  ``i``) and return each row's next-token logits (float32, CPU).
- ``remove(rows)``: drop finished or cancelled rows (indices); the others keep their order.

``TorchBatchEngine`` does one forward pass per step for all rows: the per-layer KV caches are
stacked on the batch axis and left-padded to a common length; a 2-D attention mask hides the
padding and per-row position ids keep each row's positions as if it ran alone. A row joins by
padding either it or the batch on the left; when rows leave, columns that are padding for every
remaining row are cut off. ``SerialEngine`` drives any ``Backend`` (ONNX Runtime) one row at a
time per step: the same scheduling, no shared forward pass.
"""
from __future__ import annotations

import torch
from transformers import DynamicCache


class TorchBatchEngine:
    """Batched decode with transformers' eager model and a shared, left-padded ``DynamicCache``."""

    name = "torch"
    batched = True

    def __init__(self, model):
        self.model = model
        self.module = model.module
        self.device = model.device
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # (B, L) int64, 0 = padding
        self.positions: list[int] = []  # next position id per row

    @property
    def rows(self) -> int:
        return len(self.positions)

    @property
    def length(self) -> int:
        return 0 if self.mask is None else int(self.mask.shape[1])

    @torch.inference_mode()
    def add(self, prompt_ids: list[int]) -> torch.Tensor:
        ids = torch.tensor([prompt_ids], dtype=torch.long, device=self.device)  # (1, P)
        cache = DynamicCache()  # full layers even for sliding-window models: slots stay aligned
        out = self.module(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        logits = out.logits[0, -1].float().cpu()
        p = ids.shape[1]
        mask = torch.ones((1, p), dtype=torch.long, device=self.device)
        if self.cache is None or self.rows == 0:
            self.cache, self.mask, self.positions = out.past_key_values, mask, [p]
            return logits
        length = self.length
        if p < length:
            _pad_left(out.past_key_values, length - p)
            mask = torch.cat([torch.zeros((1, length - p), dtype=torch.long, device=self.device), mask], 1)
        elif p > length:
            _pad_left(self.cache, p - length)
            self.mask = torch.cat(
                [torch.zeros((self.rows, p - length), dtype=torch.long, device=self.device), self.mask], 1
            )
        for mine, theirs in zip(self.cache.layers, out.past_key_values.layers):
            if mine.keys is not None and theirs.keys is not None:
                mine.keys = torch.cat([mine.keys, theirs.keys], 0)  # (B+1, H, L, D)
                mine.values = torch.cat([mine.values, theirs.values], 0)
        self.mask = torch.cat([self.mask, mask], 0)
        self.positions.append(p)
        return logits

    @torch.inference_mode()
    def step(self, token_ids: list[int]) -> torch.Tensor:
        b = self.rows
        assert len(token_ids) == b, (len(token_ids), b)
        ids = torch.tensor(token_ids, dtype=torch.long, device=self.device).view(b, 1)  # (B, 1)
        self.mask = torch.cat([self.mask, torch.ones((b, 1), dtype=torch.long, device=self.device)], 1)
        pos = torch.tensor(self.positions, dtype=torch.long, device=self.device).view(b, 1)  # (B, 1)
        out = self.module(
            input_ids=ids, attention_mask=self.mask, position_ids=pos, past_key_values=self.cache,
            use_cache=True, logits_to_keep=1,
        )
        self.cache = out.past_key_values
        self.positions = [p + 1 for p in self.positions]
        return out.logits[:, -1].float().cpu()  # (B, V)

    def remove(self, rows: list[int]) -> None:
        if not rows:
            return
        keep = [i for i in range(self.rows) if i not in set(rows)]
        if not keep:
            self.cache, self.mask, self.positions = None, None, []
            return
        index = torch.tensor(keep, device=self.device)
        self.mask = self.mask.index_select(0, index)
        self.positions = [self.positions[i] for i in keep]
        first = int(self.mask.argmax(dim=1).min())  # first column any remaining row uses
        self.mask = self.mask[:, first:]
        for layer in self.cache.layers:
            if layer.keys is not None and layer.keys.numel():
                layer.keys = layer.keys.index_select(0, index)[:, :, first:]
                layer.values = layer.values.index_select(0, index)[:, :, first:]

    def reset(self) -> None:
        self.cache, self.mask, self.positions = None, None, []


def _pad_left(cache: DynamicCache, n: int) -> None:
    """Prepend ``n`` zero slots to every layer of ``cache`` (masked out by the caller)."""
    for layer in cache.layers:
        if layer.keys is not None and layer.keys.numel():
            k, v = layer.keys, layer.values  # (B, H, L, D)
            layer.keys = torch.cat([k.new_zeros(k.shape[0], k.shape[1], n, k.shape[3]), k], 2)
            layer.values = torch.cat([v.new_zeros(v.shape[0], v.shape[1], n, v.shape[3]), v], 2)


class SerialEngine:
    """Any ``Backend`` (``prefill``/``step`` for one sequence): each step runs the rows in turn."""

    batched = False

    def __init__(self, backend):
        self.backend = backend
        self.name = backend.name
        self.states: list = []

    @property
    def rows(self) -> int:
        return len(self.states)

    def add(self, prompt_ids: list[int]) -> torch.Tensor:
        logits, state = self.backend.prefill(torch.tensor([prompt_ids], dtype=torch.long))
        self.states.append(state)
        return logits.float().cpu()

    def step(self, token_ids: list[int]) -> torch.Tensor:
        rows = []
        for i, token in enumerate(token_ids):
            logits, self.states[i] = self.backend.step(token, self.states[i])
            rows.append(logits.float().cpu())
        return torch.stack(rows)  # (B, V)

    def remove(self, rows: list[int]) -> None:
        drop = set(rows)
        self.states = [s for i, s in enumerate(self.states) if i not in drop]

    def reset(self) -> None:
        self.states = []


def make_engine(model, backend: str = "torch", store=None):
    """The engine for ``backend``: batched for torch, serial for the ONNX Runtime variants."""
    if backend == "torch":
        return TorchBatchEngine(model)
    from ..runtime.backends import make_backend

    return SerialEngine(make_backend(model, backend, store=store))
