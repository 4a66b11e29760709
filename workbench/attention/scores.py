"""The numbers inside one attention row: ``softmax(QKᵀ/√d_k)`` worked out for one head and query.

``score_breakdown(model, layer, head, query, ids=...)`` runs the model up to ``layer``, catches
the hidden states that enter that layer's attention module (a forward pre-hook), and redoes the
first half of attention by hand, the way the model does it:

- project: ``q = W_q·h``, ``k = W_k·h`` (GPT-2: the ``c_attn`` projection split in three);
- Gemma 3 only: RMS-normalise each head's ``q`` and ``k`` (``q_norm``/``k_norm``);
- Llama / Gemma: rotate ``q`` and ``k`` by their positions (rotary embeddings, the cos/sin the
  layer received); GPT-2 has none (its positions were added to the input embeddings);
- score every key: ``q_i · k_j × scale`` where ``scale`` is the layer's own (``1/√d_k``; Gemma 3:
  ``1/√query_pre_attn_scalar``; GPT-2 configs may also divide by the layer number);
- mask: keys after the query (the future) get ``−∞``; on a sliding-window layer so do keys more
  than ``window − 1`` positions back;
- softmax over the row.

Grouped-query models share key heads: query head ``h`` reads key/value head
``h // (heads / kv_heads)``. Returns a ``ScoreBreakdown`` (plain numpy). Holds ``model.lock``;
does not draw and does not change the model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..errors import InvalidInputError, UnsupportedModelError
from ..runtime.sampling import softmax
from .maps import check_length, encode
from .structure import SLIDING, attention_modules, model_shape
from .tokens import display_tokens


class _Caught(Exception):
    """Raised by the hook to stop the forward once the layer's inputs are caught."""


@dataclass(frozen=True)
class ScoreBreakdown:
    """One query's row of one head, before and after the softmax.

    ``scores[j]`` is ``q_query · k_j × scale`` for every key ``j`` of the text (``−inf`` where the
    mask hides the key); ``probabilities`` is their softmax (float64, sums to 1)."""

    model: str
    layer: int
    head: int
    query: int  # position of the query token
    tokens: list[str]  # every token of the text, as a person reads them
    scores: np.ndarray  # float64 (T,)
    probabilities: np.ndarray  # float64 (T,)
    d_k: int  # head dimension
    scale: float  # what q·k is multiplied by
    scale_rule: str  # e.g. "1/√d_k = 1/√64"
    kv_head: int  # the key/value head this query head reads
    heads: int
    kv_heads: int
    layer_kind: str  # "full" | "sliding"
    window: int | None  # sliding window of this layer (None on full layers)
    rotary: bool
    qk_norm: bool

    @property
    def group(self) -> list[int]:
        """Query heads that share this one's key/value head."""
        size = self.heads // self.kv_heads
        return list(range(self.kv_head * size, (self.kv_head + 1) * size))

    @property
    def visible(self) -> np.ndarray:
        """Boolean ``(T,)``: keys the mask lets this query see."""
        return np.isfinite(self.scores)

    @property
    def future_keys(self) -> int:
        return len(self.tokens) - self.query - 1

    @property
    def outside_window(self) -> int:
        """Past keys hidden by the sliding window."""
        return int((~self.visible[: self.query + 1]).sum())

    def max_abs_diff(self, row: np.ndarray) -> float:
        """Largest ``|softmax(scores) − row|``: checks these numbers against a map's row."""
        row = np.asarray(row, dtype=np.float64)
        if row.shape != self.probabilities.shape:
            raise InvalidInputError(f"The row has {row.shape[-1]} keys; this breakdown has {len(self.tokens)}.")
        return float(np.abs(self.probabilities - row).max())


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding of ``x (batch, heads, T, d)`` with ``cos, sin (batch, T, d)``."""
    return x * cos.unsqueeze(1) + _rotate_half(x) * sin.unsqueeze(1)


def _catch_inputs(model, module: torch.nn.Module, ids: list[int]) -> tuple[torch.Tensor, tuple | None]:
    """Run the model until ``module`` is called; return its ``hidden_states`` and ``position_embeddings``."""
    caught: dict = {}

    def hook(_module, args, kwargs):
        caught["hidden"] = kwargs.get("hidden_states", args[0] if args else None)
        caught["rope"] = kwargs.get("position_embeddings")
        raise _Caught

    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.inference_mode():
            model.module(input_ids=torch.tensor([ids], device=model.device), use_cache=False, logits_to_keep=1)
    except _Caught:
        pass
    finally:
        handle.remove()
    if caught.get("hidden") is None:
        raise UnsupportedModelError(f"The attention module of {model.card.name} was not called with hidden states.")
    return caught["hidden"], caught["rope"]


def _query_keys(module: torch.nn.Module, hidden: torch.Tensor, rope, head_dim: int):
    """``q (1, heads, T, d)`` and ``k (1, kv_heads, T, d)`` as the layer computes them."""
    shape = (*hidden.shape[:-1], -1, head_dim)
    if hasattr(module, "q_proj") and hasattr(module, "k_proj"):  # Llama, Gemma 3
        q = module.q_proj(hidden).view(shape).transpose(1, 2)
        k = module.k_proj(hidden).view(shape).transpose(1, 2)
        norm = hasattr(module, "q_norm") and hasattr(module, "k_norm")
        if norm:
            q, k = module.q_norm(q), module.k_norm(k)
        if rope is None:
            raise UnsupportedModelError(f"{type(module).__name__} got no rotary position embeddings.")
        cos, sin = rope
        return _rotary(q, cos, sin), _rotary(k, cos, sin), True, norm
    if hasattr(module, "c_attn"):  # GPT-2
        q, k, _ = module.c_attn(hidden).split(module.split_size, dim=2)
        return q.view(shape).transpose(1, 2), k.view(shape).transpose(1, 2), False, False
    raise UnsupportedModelError(
        f"{type(module).__name__} has neither q_proj/k_proj nor c_attn: the score breakdown works for "
        "Llama, Gemma 3 and GPT-2 style models."
    )


def _scale_rule(model, module, head_dim: int, scale: float) -> str:
    cfg = getattr(model.config, "text_config", None) or model.config
    scalar = getattr(cfg, "query_pre_attn_scalar", None)
    if scalar and abs(scale - scalar ** -0.5) < 1e-9:
        return f"1/√query_pre_attn_scalar = 1/√{scalar:g}"
    if abs(scale - head_dim ** -0.5) < 1e-9:
        return f"1/√d_k = 1/√{head_dim}"
    if getattr(module, "scale_attn_by_inverse_layer_idx", False):
        return f"1/(√d_k × (layer + 1)) = 1/(√{head_dim} × {module.layer_idx + 1})"
    return f"{scale:.6g} (the layer's own scaling)"


def score_breakdown(
    model,
    layer: int,
    head: int,
    query: int | None = None,
    text: str | None = None,
    *,
    ids: Sequence[int] | None = None,
) -> ScoreBreakdown:
    """Pre-softmax scores and softmax of query position ``query`` (default: the last token) of
    ``head`` in ``layer``, over ``text`` (or token ``ids``). See the module docstring."""
    if ids is None:
        ids = encode(model, text or "")
    ids = [int(i) for i in ids]
    check_length(model, len(ids))
    shape = model_shape(model)
    T = len(ids)
    query = T - 1 if query is None else int(query)
    if not 0 <= layer < shape.layers:
        raise InvalidInputError(f"Layer {layer} does not exist: {model.card.name} has layers 0–{shape.layers - 1}.")
    if not 0 <= head < shape.heads:
        raise InvalidInputError(f"Head {head} does not exist: heads are 0–{shape.heads - 1}.")
    if not 0 <= query < T:
        raise InvalidInputError(f"Query position {query} does not exist: the text has tokens 0–{T - 1}.")
    module = attention_modules(model.module)[layer]
    head_dim = int(getattr(module, "head_dim", 0) or shape.hidden_size // shape.heads)
    scale = float(module.scaling)
    group = shape.heads // shape.kv_heads
    kv_head = head // group
    with model.lock, torch.inference_mode():
        hidden, rope = _catch_inputs(model, module, ids)
        q, k, rotary, norm = _query_keys(module, hidden, rope, head_dim)
        q_row = q[0, head, query].double()  # (d,)
        keys = k[0, kv_head].double()  # (T, d)
        scores = (keys @ q_row * scale).cpu().numpy()  # (T,)
    positions = np.arange(T)
    hidden_mask = positions > query  # the future
    kind = shape.layer_kinds[layer]
    window = shape.sliding_window if kind == SLIDING else None
    if window:
        hidden_mask |= positions <= query - window  # keys the window has left behind
    scores = np.where(hidden_mask, -np.inf, scores)
    return ScoreBreakdown(
        model=model.card.id, layer=int(layer), head=int(head), query=query,
        tokens=display_tokens(model.tokenizer, ids), scores=scores, probabilities=softmax(np.asarray(scores, dtype=np.float64)),
        d_k=head_dim, scale=scale, scale_rule=_scale_rule(model, module, head_dim, scale),
        kv_head=kv_head, heads=shape.heads, kv_heads=shape.kv_heads, layer_kind=kind, window=window,
        rotary=rotary, qk_norm=norm,
    )


def breakdown_frame(bd: ScoreBreakdown):
    """The row as a table, one line per key up to the query: position, token, score
    (``−inf`` when masked), weight. A pandas ``DataFrame``; keys after the query are left out
    (all ``−inf``, weight 0)."""
    import pandas as pd

    n = bd.query + 1
    return pd.DataFrame({
        "position": np.arange(n),
        "key token": bd.tokens[:n],
        "score q·k×scale": bd.scores[:n],
        "weight (softmax)": bd.probabilities[:n],
    })
