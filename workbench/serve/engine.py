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
remaining row are cut off. ``OrtBatchEngine`` does the same on an ONNX Runtime variant (its
exports take a batch, a 2-D mask and position ids). ``SerialEngine`` drives any other ``Backend``
one row at a time: the same scheduling, no shared forward pass, each prompt read whole;
``NativeEngine`` does so for a native backend (llama.cpp) run in its own process, whose crash ends
that engine, not the server.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers import DynamicCache


@dataclass(eq=False)
class Prefill:
    """New sequences read together: left-padded ids and mask (N, P), their own cache, how far."""

    ids: torch.Tensor  # (N, P) int64, padding = 0
    mask: torch.Tensor  # (N, P) int64, 0 = padding
    cache: object  # the engine's cache of the columns read so far
    read: int = 0  # columns read so far

    @property
    def rows(self) -> int:
        return int(self.ids.shape[0])

    @property
    def remaining(self) -> int:
        return int(self.ids.shape[1]) - self.read


class BatchEngine:
    """One forward pass per step for every row, over a left-padded cache (see the module docstring).

    Subclasses keep the cache and run the network: ``_forward(ids, mask, positions, cache) ->
    (logits (B, V) float32 CPU, cache)`` with torch int64 ``ids``/``positions`` (B, S) and ``mask``
    (B, L + S); ``_empty(rows)``; ``_pad_left(cache, n)`` (n masked slots first), ``_concat(a, b)``
    (rows of ``b`` after ``a``'s), ``_select(cache, rows)`` and ``_cut(cache, first)`` (drop the
    first columns), each returning the new cache."""

    batched = True

    def __init__(self, device):
        self.device = device
        self.cache = None
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
        return Prefill(ids, mask, self._empty(len(prompts)))

    @torch.inference_mode()
    def advance(self, pre: Prefill, columns: int | None = None) -> torch.Tensor | None:
        end = pre.ids.shape[1] if columns is None else min(pre.ids.shape[1], pre.read + max(1, columns))
        pos = (pre.mask.cumsum(1) - 1).clamp(min=0)[:, pre.read:end]  # (N, C): each row from 0
        logits, pre.cache = self._forward(pre.ids[:, pre.read:end], pre.mask[:, :end], pos, pre.cache)
        pre.read = end
        if pre.remaining:
            return None
        self._join(pre)
        return logits  # (N, V)

    def add(self, prompt_ids: list[int]) -> torch.Tensor:
        return self.advance(self.start([prompt_ids]))[0]

    def _join(self, pre: Prefill) -> None:
        """Stack a read group's rows under the batch, padding the shorter side on the left."""
        lengths = pre.mask.sum(1).tolist()
        if self.cache is None or self.rows == 0:
            self.cache, self.mask, self.positions = pre.cache, pre.mask, lengths
            self._trim()
            return
        cache, mask, p, length = pre.cache, pre.mask, pre.ids.shape[1], self.length
        if p < length:
            cache = self._pad_left(cache, length - p)
            mask = torch.cat([mask.new_zeros((pre.rows, length - p)), mask], 1)
        elif p > length:
            self.cache = self._pad_left(self.cache, p - length)
            self.mask = torch.cat([self.mask.new_zeros((self.rows, p - length)), self.mask], 1)
        self.cache = self._concat(self.cache, cache)
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
        logits, self.cache = self._forward(ids, self.mask, pos, self.cache)
        self.positions = [p + 1 for p in self.positions]
        return logits  # (B, V)

    def remove(self, rows: list[int]) -> None:
        if not rows:
            return
        drop = set(rows)
        keep = [i for i in range(self.rows) if i not in drop]
        if not keep:
            self.reset()
            return
        self.mask = self.mask[keep]
        self.positions = [self.positions[i] for i in keep]
        self.cache = self._select(self.cache, keep)
        self._trim()

    def _trim(self) -> None:
        """Cut the columns on the left that are padding for every row."""
        first = int(self.mask.argmax(dim=1).min())  # first column any row uses
        if first:
            self.mask = self.mask[:, first:]
            self.cache = self._cut(self.cache, first)

    def reset(self) -> None:
        self.cache, self.mask, self.positions = None, None, []


class TorchBatchEngine(BatchEngine):
    """Batched decode with transformers' eager model and a shared, left-padded ``DynamicCache``."""

    name = "torch"

    def __init__(self, model):
        super().__init__(model.device)
        self.model = model
        self.module = model.module

    def _forward(self, ids, mask, positions, cache):
        out = self.module(
            input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
            use_cache=True, logits_to_keep=1,
        )
        return out.logits[:, -1].float().cpu(), out.past_key_values

    def _empty(self, rows: int) -> DynamicCache:
        return DynamicCache()  # full layers even for sliding-window models: slots stay aligned

    @staticmethod
    def _layers(cache: DynamicCache):
        return [layer for layer in cache.layers if layer.keys is not None and layer.keys.numel()]

    def _pad_left(self, cache: DynamicCache, n: int) -> DynamicCache:
        for layer in self._layers(cache):
            k, v = layer.keys, layer.values  # (B, H, L, D)
            layer.keys = torch.cat([k.new_zeros(k.shape[0], k.shape[1], n, k.shape[3]), k], 2)
            layer.values = torch.cat([v.new_zeros(v.shape[0], v.shape[1], n, v.shape[3]), v], 2)
        return cache

    def _concat(self, cache: DynamicCache, other: DynamicCache) -> DynamicCache:
        for mine, theirs in zip(cache.layers, other.layers):
            if mine.keys is not None and theirs.keys is not None:
                mine.keys = torch.cat([mine.keys, theirs.keys], 0)  # (B+N, H, L, D)
                mine.values = torch.cat([mine.values, theirs.values], 0)
        return cache

    def _select(self, cache: DynamicCache, rows: list[int]) -> DynamicCache:
        index = torch.tensor(rows, device=self.device)
        for layer in self._layers(cache):
            layer.keys = layer.keys.index_select(0, index)
            layer.values = layer.values.index_select(0, index)
        return cache

    def _cut(self, cache: DynamicCache, first: int) -> DynamicCache:
        for layer in self._layers(cache):
            layer.keys = layer.keys[:, :, first:]
            layer.values = layer.values[:, :, first:]
        return cache


class OrtBatchEngine(BatchEngine):
    """Batched decode on an ONNX Runtime backend (``OrtBackend.forward``): the exports take a
    batch, a 2-D mask and position ids, so rows share each forward pass as on torch. The cache
    stays in ONNX Runtime's output buffers between steps; joining, leaving and trimming rebuild it
    from host arrays (once per such event, not per step)."""

    def __init__(self, backend):
        super().__init__("cpu")
        self.backend = backend
        self.name = backend.name

    def _forward(self, ids, mask, positions, cache):
        as_array = lambda t: np.ascontiguousarray(t.numpy(), np.int64)
        logits, cache = self.backend.forward(as_array(ids), as_array(mask), as_array(positions), cache)
        # a copy: the logits live in that call's output buffers, which go when the cache is rebuilt
        return logits.clone(), cache

    def _empty(self, rows: int):
        return self.backend.empty_cache(rows)

    def _rebuild(self, change, *caches):
        arrays = zip(*(self.backend.cache_arrays(c) for c in caches))
        return self.backend.cache_from_arrays([change(*a) for a in arrays])

    def _pad_left(self, cache, n: int):
        return self._rebuild(lambda a: np.pad(a, ((0, 0), (0, 0), (n, 0), (0, 0))), cache)

    def _concat(self, cache, other):
        return self._rebuild(lambda a, b: np.concatenate([a, b], 0), cache, other)

    def _select(self, cache, rows: list[int]):
        return self._rebuild(lambda a: a[rows], cache)

    def _cut(self, cache, first: int):
        return self._rebuild(lambda a: a[:, :, first:], cache)


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


class NativeEngine(SerialEngine):
    """``SerialEngine`` over a native backend in its own process (``isolated.IsolatedBackend``).

    When that process dies, the step or prefill that saw it raises ``BackendCrashedError`` (500,
    the signal in its message) and ``reset`` raises it again: the batcher is marked dead, its
    waiting requests get 503, and the registry starts a new process on the next request. The
    server itself and the other models' batchers go on."""

    def reset(self) -> None:
        super().reset()
        if getattr(self.backend, "dead", False):
            raise self.backend.error

    def close(self) -> None:
        self.backend.close()


def make_engine(model, backend: str = "torch", store=None):
    """The engine for ``backend``: batched for torch and the ONNX Runtime variants, serial for a
    backend without a batched forward pass; a native backend (llama.cpp, any registered in
    ``runtime.backends.isolated``) runs in a child process, serially (``NativeEngine``)."""
    if backend == "torch":
        return TorchBatchEngine(model)
    from ..runtime.backends.isolated import is_native, make_any_backend

    runner = make_any_backend(model, backend, store=store)
    if is_native(backend):
        return NativeEngine(runner)
    return OrtBatchEngine(runner) if hasattr(runner, "forward") else SerialEngine(runner)
