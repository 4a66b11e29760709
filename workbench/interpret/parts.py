"""The pieces of a decoder-only model that the interpretability views need, and their shared
input checks.

Supported layouts (transformers 5): Llama-style and Gemma 3 (``model.embed_tokens``,
``model.layers``, ``model.norm``, ``lm_head``) and GPT-2 (``transformer.wte``/``wpe``,
``transformer.h``, ``transformer.ln_f``, ``lm_head``). ``unembed`` applies Gemma's final logit
softcapping (``tanh(x / c) * c``) when the config sets ``final_logit_softcapping``, so it returns
exactly what the model's own head returns. Nothing here runs a forward pass on its own.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..attention.maps import check_length, encode
from ..attention.structure import decoder_stack
from ..common import text_config
from ..errors import InvalidInputError, UnsupportedModelError

CAPABILITY = "attention"  # cards that declare it load eager and expose hidden states and weights


def base_model(module: torch.nn.Module) -> torch.nn.Module:
    """The decoder stack (``LlamaModel``, ``Gemma3TextModel``, ``GPT2Model``)."""
    return decoder_stack(module)


def final_norm(module: torch.nn.Module) -> torch.nn.Module:
    """The norm applied after the last block (``model.norm`` or GPT-2's ``transformer.ln_f``)."""
    base = base_model(module)
    norm = getattr(base, "norm", None) or getattr(base, "ln_f", None)
    if norm is None:
        raise UnsupportedModelError(f"{type(module).__name__} has no final norm (norm or ln_f).")
    return norm


def softcap(module: torch.nn.Module) -> float | None:
    """Gemma's ``final_logit_softcapping`` (None when the model has none)."""
    cap = getattr(text_config(module.config), "final_logit_softcapping", None)
    return float(cap) if cap else None


def unembed(module: torch.nn.Module, normed: torch.Tensor) -> torch.Tensor:
    """``(..., hidden)`` already through the final norm -> ``(..., vocab)`` float32 logits,
    softcapped as the model's own head does."""
    head = module.get_output_embeddings()
    logits = head(normed).float()
    cap = softcap(module)
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return logits


def require(model) -> None:
    """Refuse a model whose card does not declare the capability these views need."""
    if not model.card.can(CAPABILITY):
        raise UnsupportedModelError(
            f"{model.card.name} does not declare the '{CAPABILITY}' capability on its card, so the "
            "Inside views (which read its hidden states and attention) are off for it. Pick a model "
            "whose card lists it, or add it to the card's capabilities if the model is a Llama, "
            "Gemma 3 or GPT-2 style decoder.")


@dataclass(frozen=True)
class Prepared:
    """Token ids ready for a view. ``note`` says what was cut ("" when nothing)."""

    ids: list[int]
    total: int  # tokens of the text before any cap
    note: str


def prepare(model, text: str | None = None, ids: Sequence[int] | None = None,
            max_tokens: int | None = None, what: str = "the view") -> Prepared:
    """Encode ``text`` (or take ``ids``), refuse empty input, and keep only the last ``max_tokens``
    tokens (at most the model's context) when there are more; the note says what was dropped."""
    require(model)
    if ids is None:
        ids = encode(model, text or "")
    ids = [int(i) for i in ids]
    if not ids:
        raise InvalidInputError("There are no tokens to look at: type some text.")
    total = len(ids)
    note = ""
    limit = min(max_tokens or model.context_length, model.context_length)
    if total > limit:
        why = (f"{model.card.name} reads at most {limit:,}" if limit == model.context_length
               else "to keep time and memory in bounds")
        ids = ids[-limit:]
        note = (f"The text is {total:,} tokens; {what} reads only its last {limit:,} "
                f"(the first {total - limit:,} were dropped: {why}).")
    check_length(model, len(ids))
    return Prepared(ids, total, note)


def input_embeddings(module: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` ids -> ``(B, T, hidden)`` what the model adds position information to:
    the token embedding (Gemma's ``sqrt(hidden)`` scaling included, as its ``embed_tokens`` applies
    it; GPT-2's learned positions are added later, inside the model)."""
    return module.get_input_embeddings()(ids)
