"""Head ablation: switch attention heads off and see what the model predicts without them.

A head is switched off by zeroing its slice of the input to the layer's output projection
(``o_proj`` in Llama and Gemma 3, ``c_proj`` in GPT-2): the concatenated per-head outputs are
``(batch, seq, heads * head_dim)``, head ``h`` owns ``[h * head_dim, (h + 1) * head_dim)``, so the
head contributes nothing to the residual stream while every other head is untouched.

``ablate(model, heads)`` is a context manager: the hooks exist only inside it, only while
``model.lock`` is held, and act only on forwards of the thread that installed them.
``compare_next_token`` returns the next-token top-k with and without; ``regenerate`` generates
both ways. Heads are ``(layer, head)`` pairs, 0-based, per query head.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

from ..errors import InvalidInputError
from .maps import encode, top_predictions
from .results import Prediction
from .structure import attention_modules, model_shape

Head = tuple[int, int]


def parse_heads(spec: str) -> list[Head]:
    """``"3.1, 5.0"`` (layer.head) -> ``[(3, 1), (5, 0)]``."""
    heads = []
    for part in (p.strip() for p in spec.replace(";", ",").split(",")):
        if not part:
            continue
        try:
            layer, head = (int(x) for x in part.replace(":", ".").split("."))
        except ValueError:
            raise InvalidInputError(
                f"'{part}' is not a head: write layer.head, e.g. 3.1 for layer 3, head 1."
            ) from None
        heads.append((layer, head))
    return heads


def _out_projection(attn: torch.nn.Module) -> torch.nn.Module:
    for name in ("o_proj", "c_proj", "out_proj", "dense"):
        proj = getattr(attn, name, None)
        if isinstance(proj, torch.nn.Module):
            return proj
    raise InvalidInputError(f"{type(attn).__name__} has no output projection the workbench knows (o_proj, c_proj).")


def check_heads(model, heads: Iterable[Head]) -> list[Head]:
    shape = model_shape(model)
    checked = sorted({(int(layer), int(head)) for layer, head in heads})
    for layer, head in checked:
        if not 0 <= layer < shape.layers or not 0 <= head < shape.heads:
            raise InvalidInputError(
                f"Head {layer}.{head} does not exist: {model.card.name} has layers 0–{shape.layers - 1} "
                f"and heads 0–{shape.heads - 1}."
            )
    return checked


@contextmanager
def ablate(model, heads: Iterable[Head]):
    """Zero the listed heads for forwards run in this thread inside the block."""
    heads = check_heads(model, heads)
    shape = model_shape(model)
    modules = attention_modules(model.module)
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)
    owner = threading.get_ident()

    def hook_for(head_list: Sequence[int], head_dim: int):
        def hook(_module, args):
            if threading.get_ident() != owner:
                return None
            x = args[0].clone()  # (batch, seq, heads * head_dim)
            for h in head_list:
                x[..., h * head_dim:(h + 1) * head_dim] = 0
            return (x,) + tuple(args[1:])
        return hook

    with model.lock:
        handles = []
        try:
            for layer, head_list in by_layer.items():
                attn = modules[layer]
                head_dim = int(getattr(attn, "head_dim", 0) or shape.hidden_size // shape.heads)
                handles.append(_out_projection(attn).register_forward_pre_hook(hook_for(head_list, head_dim)))
            yield heads
        finally:
            for h in handles:
                h.remove()


@dataclass(frozen=True)
class Comparison:
    """Next-token top-k of one text with all heads and with ``heads`` switched off."""

    heads: tuple[Head, ...]
    baseline: list[Prediction]
    ablated: list[Prediction]
    # every token of either top-k: (token, id, probability with all heads, with heads off)
    rows: list[tuple[str, int, float, float]]

    @property
    def baseline_top_prob_after(self) -> float:
        """Probability, with the heads off, of the baseline's first choice."""
        return self.rows[0][3] if self.rows else 0.0

    @property
    def top_changed(self) -> bool:
        return bool(self.baseline and self.ablated) and self.baseline[0].id != self.ablated[0].id


@torch.inference_mode()
def _next_logits(model, ids: list[int]) -> torch.Tensor:
    out = model.module(input_ids=torch.tensor([ids], device=model.device), use_cache=False, logits_to_keep=1)
    return out.logits[0, -1].float()


def compare_next_token(model, text: str | None = None, heads: Iterable[Head] = (), *,
                       ids: Sequence[int] | None = None, k: int = 10) -> Comparison:
    ids = [int(i) for i in ids] if ids is not None else encode(model, text or "")
    if len(ids) > model.context_length:
        raise InvalidInputError(f"The text is {len(ids):,} tokens; {model.card.name} reads at most "
                                f"{model.context_length:,}. Shorten it.")
    heads = check_heads(model, heads)
    with model.lock:
        base_logits = _next_logits(model, ids)
        with ablate(model, heads):
            ablated_logits = _next_logits(model, ids)
    base, ablated = top_predictions(model, base_logits, k), top_predictions(model, ablated_logits, k)
    p_base, p_after = torch.softmax(base_logits, -1), torch.softmax(ablated_logits, -1)
    names = {p.id: p.token for p in base + ablated}
    rows = [(names[i], i, float(p_base[i]), float(p_after[i])) for i in dict.fromkeys(p.id for p in base + ablated)]
    return Comparison(tuple(heads), base, ablated, rows)


def regenerate(model, prompt, heads: Iterable[Head], **settings):
    """Generate with all heads and with ``heads`` switched off (same settings and seed).
    Returns ``(baseline GenerationResult, ablated GenerationResult)``."""
    heads = check_heads(model, heads)
    with model.lock:
        baseline = model.generate(prompt, **settings)
        with ablate(model, heads):
            ablated = model.generate(prompt, **settings)
    return baseline, ablated
