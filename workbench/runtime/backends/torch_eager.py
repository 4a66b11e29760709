"""Eager PyTorch through transformers, with its ``DynamicCache``: the reference backend."""
from __future__ import annotations

import torch
from transformers import DynamicCache


class TorchBackend:
    """Eager PyTorch with transformers' ``DynamicCache`` (see ``workbench.runtime.backends``).

    Subclasses may override ``new_cache`` (which cache a prefill starts) and ``after_forward``
    (called after every forward pass, e.g. to read hooks)."""

    name = "torch"

    def __init__(self, model):
        self.model = model
        self.module = model.module
        self.device = model.device

    def new_cache(self):
        return DynamicCache(config=self.module.config)

    def after_forward(self) -> None:
        pass

    @torch.inference_mode()
    def prefill(self, input_ids: torch.Tensor):
        ids = input_ids.to(self.device)  # (1, T)
        out = self.module(input_ids=ids, past_key_values=self.new_cache(), use_cache=True, logits_to_keep=1)
        self.after_forward()
        return out.logits[0, -1].float(), (out.past_key_values, ids.shape[1])

    @torch.inference_mode()
    def step(self, token_id: int, state):
        cache, length = state
        ids = torch.tensor([[token_id]], device=self.device)  # (1, 1)
        pos = torch.tensor([length], device=self.device)
        out = self.module(
            input_ids=ids, past_key_values=cache, use_cache=True, cache_position=pos, logits_to_keep=1
        )
        self.after_forward()
        return out.logits[0, -1].float(), (out.past_key_values, length + 1)

    def synchronize(self) -> None:
        if str(self.device).startswith("cuda"):
            torch.cuda.synchronize()
