"""Engines: run one decode step for every active sequence of one model.

An engine knows the network and the KV cache, nothing about tokens' text, sampling or stopping.
Rows are identified by the order they joined; the batcher keeps the same order.

- ``start(prompts) -> Prefill``: a group of new sequences to read together (nothing runs yet).
- ``advance(prefill, columns=None) -> logits (N, V) | None``: read up to ``columns`` more prompt
  positions of the group in one forward pass (None: all the rest). While some remain it returns
  None; once the prompts are read the group's rows join the batch, after the rows already there
  and in the order of ``prompts``, and it returns each new row's next-token logits.
- ``add(prompt_ids) -> logits (V,)``: one sequence, read at once (``start`` + ``advance``).
- ``step(token_ids) -> logits (B, V)``: feed each row its next token (``token_ids[i]`` for row
  ``i``) and return each row's next-token logits (float32, CPU).
- ``remove(rows)``: drop finished or cancelled rows (indices); the others keep their order.

``TorchBatchEngine`` does one forward pass per step for all rows: the per-layer KV caches are
stacked on the batch axis and left-padded to a common length; a 2-D attention mask hides the
padding and per-row position ids keep each row's positions as if it ran alone. A prefill group is
left-padded the same way and read with its own cache, a chunk of columns per ``advance``, so a
long prompt can be read between decode steps instead of stalling them; when it is read it joins by
padding either it or the batch on the left. When rows leave, columns that are padding for every
remaining row are cut off. ``SerialEngine`` drives any ``Backend`` (ONNX Runtime) one row at a
time: the same scheduling, no shared forward pass, each prompt read whole.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache


@dataclass(eq=False)
class Prefill:
    """New sequences read together: left-padded ids and mask (N, P), their own cache, how far."""

    ids: torch.Tensor  # (N, P) int64, padding = 0
    mask: torch.Tensor  # (N, P) int64, 0 = padding
    cache: DynamicCache
    read: int = 0  # columns read so far

    @property
    def rows(self) -> int:
        return int(self.ids.shape[0])

    @property
    def remaining(self) -> int:
        return int(self.ids.shape[1]) - self.read


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

    def start(self, prompts: list[list[int]]) -> Prefill:
        if not prompts or not all(prompts):
            raise ValueError("every prompt needs at least one token")
        p = max(len(x) for x in prompts)
        ids = torch.zeros((len(prompts), p), dtype=torch.long, device=self.device)  # (N, P)
        mask = torch.zeros_like(ids)
        for i, x in enumerate(prompts):
            ids[i, p - len(x):] = torch.tensor(x, dtype=torch.long)
            mask[i, p - len(x):] = 1
        # full layers even for sliding-window models: slots stay aligned
        return Prefill(ids, mask, DynamicCache())

    @torch.inference_mode()
    def advance(self, pre: Prefill, columns: int | None = None) -> torch.Tensor | None:
        end = pre.ids.shape[1] if columns is None else min(pre.ids.shape[1], pre.read + max(1, columns))
        pos = (pre.mask.cumsum(1) - 1).clamp(min=0)[:, pre.read:end]  # (N, C): each row from 0
        out = self.module(
            input_ids=pre.ids[:, pre.read:end], attention_mask=pre.mask[:, :end], position_ids=pos,
            past_key_values=pre.cache, use_cache=True, logits_to_keep=1,
        )
        pre.cache, pre.read = out.past_key_values, end
        if pre.remaining:
            return None
        self._join(pre)
        return out.logits[:, -1].float().cpu()  # (N, V)

    def add(self, prompt_ids: list[int]) -> torch.Tensor:
        return self.advance(self.start([prompt_ids]))[0]

    def _join(self, pre: Prefill) -> None:
        """Stack a read group's rows under the batch, padding the shorter side on the left."""
        lengths = pre.mask.sum(1).tolist()
        if self.cache is None or self.rows == 0:
            self.cache, self.mask, self.positions = pre.cache, pre.mask, lengths
            self._trim()
            return
        mask, p, length = pre.mask, pre.ids.shape[1], self.length
        if p < length:
            _pad_left(pre.cache, length - p)
            mask = torch.cat([mask.new_zeros((pre.rows, length - p)), mask], 1)
        elif p > length:
            _pad_left(self.cache, p - length)
            self.mask = torch.cat([self.mask.new_zeros((self.rows, p - length)), self.mask], 1)
        for mine, theirs in zip(self.cache.layers, pre.cache.layers):
            if mine.keys is not None and theirs.keys is not None:
                mine.keys = torch.cat([mine.keys, theirs.keys], 0)  # (B+N, H, L, D)
                mine.values = torch.cat([mine.values, theirs.values], 0)
        self.mask = torch.cat([self.mask, mask], 0)
        self.positions += lengths
        self._trim()

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
        drop = set(rows)
        keep = [i for i in range(self.rows) if i not in drop]
        if not keep:
            self.cache, self.mask, self.positions = None, None, []
            return
        index = torch.tensor(keep, device=self.device)
        self.mask = self.mask.index_select(0, index)
        self.positions = [self.positions[i] for i in keep]
        for layer in self.cache.layers:
            if layer.keys is not None and layer.keys.numel():
                layer.keys = layer.keys.index_select(0, index)
                layer.values = layer.values.index_select(0, index)
        self._trim()

    def _trim(self) -> None:
        """Cut the columns on the left that are padding for every row."""
        first = int(self.mask.argmax(dim=1).min())  # first column any row uses
        if not first:
            return
        self.mask = self.mask[:, first:]
        for layer in self.cache.layers:
            if layer.keys is not None and layer.keys.numel():
                layer.keys = layer.keys[:, :, first:]
                layer.values = layer.values[:, :, first:]

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

    def start(self, prompts: list[list[int]]) -> list[list[int]]:
        return [list(x) for x in prompts]

    def advance(self, prompts: list[list[int]], columns: int | None = None) -> torch.Tensor:
        """Reads every prompt whole (the exports take no chunked prefill); ``columns`` is ignored."""
        return torch.stack([self.add(x) for x in prompts])  # (N, V)

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
