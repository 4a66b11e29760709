"""Forward-pass backends the generation loop can drive interchangeably.

A backend knows how to run the network, nothing about tokenization or sampling:

- ``prefill(input_ids)``: ``input_ids`` is a ``(1, T)`` int64 tensor; returns the next-token
  logits ``(V,)`` as a float32 CPU-or-device torch tensor and an opaque state (the KV cache).
- ``step(token_id, state)``: feeds one token, returns ``(logits (V,), state)``.

The state is created per call, so one backend object can serve several threads at once.
"""
from __future__ import annotations

from typing import Any, Protocol

import torch
from transformers import DynamicCache


class Backend(Protocol):
    name: str
    device: str

    def prefill(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, Any]: ...

    def step(self, token_id: int, state: Any) -> tuple[torch.Tensor, Any]: ...

    def synchronize(self) -> None: ...


class TorchBackend:
    """Eager PyTorch with transformers' ``DynamicCache``."""

    name = "torch"

    def __init__(self, model):
        self.model = model
        self.module = model.module
        self.device = model.device

    @torch.inference_mode()
    def prefill(self, input_ids: torch.Tensor):
        ids = input_ids.to(self.device)  # (1, T)
        cache = DynamicCache(config=self.module.config)
        out = self.module(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        return out.logits[0, -1].float(), (out.past_key_values, ids.shape[1])

    @torch.inference_mode()
    def step(self, token_id: int, state):
        cache, length = state
        ids = torch.tensor([[token_id]], device=self.device)  # (1, 1)
        pos = torch.tensor([length], device=self.device)
        out = self.module(
            input_ids=ids, past_key_values=cache, use_cache=True, cache_position=pos, logits_to_keep=1
        )
        return out.logits[0, -1].float(), (out.past_key_values, length + 1)

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
