"""Attention maps of one text in one eager forward pass, as plain numpy arrays.

``attention(model, "some text")`` returns an ``AttentionResult``: the tokens as a person reads them
(no ``Ġ``/``▁`` markers; spaces shown as ``␣``, newlines as ``↵``) and the weights as float32
``[layers, heads, query, key]``, one map per *query* head (a grouped-query model's shared
key/value heads are repeated, as transformers' eager attention does). Rows sum to 1; entries
above the diagonal (the future) and, on sliding-window layers, outside the window are 0.

The weights come from forward hooks on each layer's attention module, which needs the model
loaded with ``attn_implementation="eager"`` (sdpa never materialises the weights). Hooks are
installed only while ``model.lock`` is held, and record only the forward of the thread that
installed them. Nothing here draws: ``workbench.views`` does.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np
import torch

from ..errors import InvalidInputError, WorkbenchError
from ..runtime.sampling import softmax_top
from .budget import estimate_memory, max_tokens_within
from .results import AttentionResult, Prediction
from .structure import attention_modules, check_eager, model_shape
from .tokens import display_tokens


def encode(model, text: str) -> list[int]:
    """Token ids of ``text`` as the model reads a plain prompt (special tokens as the tokenizer adds)."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError("The text is empty: type something to look at.")
    return list(model.tokenizer(text)["input_ids"])


def check_length(model, n: int) -> None:
    """Refuse 0 tokens, or more than the model reads (the message says the limit)."""
    if n < 1:
        raise InvalidInputError("There are no tokens to look at: type some text.")
    if n > model.context_length:
        raise InvalidInputError(
            f"The text is {n:,} tokens; {model.card.name} reads at most {model.context_length:,}. Shorten it."
        )


@contextmanager
def capture(model, layers: Sequence[int] | None = None,
            into: np.ndarray | None = None) -> Iterator[dict[int, list[np.ndarray]]]:
    """Record attention weights of the listed layers (all when None) while inside the block.

    Yields ``{layer: [array (heads, query, key) per forward call, ...]}``; with ``into`` (a float32
    ``(len(layers), heads, T, T)`` array) one forward's maps are copied straight into it instead,
    so no second copy of the weights exists. Holds ``model.lock``; forwards from other threads
    are not recorded."""
    check_eager(model)
    modules = attention_modules(model.module)
    wanted = range(len(modules)) if layers is None else layers
    for i in wanted:
        if not 0 <= i < len(modules):
            raise InvalidInputError(f"Layer {i} does not exist: {model.card.name} has layers 0–{len(modules) - 1}.")
    owner = threading.get_ident()
    found: dict[int, list[np.ndarray]] = {i: [] for i in wanted}
    row = {layer: r for r, layer in enumerate(wanted)}

    def hook_for(i):
        def hook(_module, _args, output):
            if threading.get_ident() != owner:
                return
            weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if weights is None:
                raise WorkbenchError(
                    f"Layer {i} returned no attention weights: load the model with attn_implementation='eager'."
                )
            if into is not None:
                into[row[i]] = weights[0].detach().float().cpu().numpy()  # (heads, q, k)
            else:
                found[i].append(weights[0].detach().float().cpu().numpy())
        return hook

    with model.lock:
        handles = [modules[i].register_forward_hook(hook_for(i)) for i in wanted]
        try:
            yield found
        finally:
            for h in handles:
                h.remove()


def top_predictions(model, logits: torch.Tensor, k: int) -> list[Prediction]:
    """The ``k`` most likely next tokens of raw ``logits`` (V,), each shown on its own (they are
    alternatives, not a sequence)."""
    probs, top = softmax_top(logits.float().cpu(), k)
    return [Prediction(display_tokens(model.tokenizer, [j])[0], int(j), float(probs[j])) for j in top]


def attention(
    model,
    text: str | None = None,
    *,
    ids: Sequence[int] | None = None,
    layers: Sequence[int] | None = None,
    top_k: int = 5,
    budget_bytes: int | None = None,
) -> AttentionResult:
    """Attention of every head over ``text`` (or token ``ids``) in one eager forward pass.

    ``layers`` keeps only those model layers (all by default); the memory estimate is checked
    first and a run that would not fit raises ``InvalidInputError`` saying how long a text fits.
    ``next_tokens``: the model's top ``top_k`` next tokens after the text."""
    if ids is None:
        ids = encode(model, text or "")
    ids = [int(i) for i in ids]
    check_length(model, len(ids))
    shape = model_shape(model)
    keep = list(range(shape.layers)) if layers is None else sorted(set(int(i) for i in layers))
    if not keep:
        raise InvalidInputError("Pick at least one layer.")
    estimate = estimate_memory(model, len(ids), keep, budget_bytes)
    if not estimate.fits:
        fits = max_tokens_within(model, estimate.budget_bytes, len(keep))
        raise InvalidInputError(
            f"{estimate.describe()} That does not fit: shorten the text to about {fits:,} tokens, "
            "or keep fewer layers."
        )
    weights = np.empty((len(keep), shape.heads, len(ids), len(ids)), dtype=np.float32)  # (L, H, T, T)
    start = time.perf_counter()
    with capture(model, keep, into=weights), torch.inference_mode():
        out = model.module(input_ids=torch.tensor([ids], device=model.device), use_cache=False, logits_to_keep=1)
    forward_ms = (time.perf_counter() - start) * 1000
    return AttentionResult(
        model=model.card.id,
        token_ids=ids,
        tokens=display_tokens(model.tokenizer, ids),
        weights=weights,
        layers=tuple(keep),
        layer_kinds=tuple(shape.layer_kinds[i] for i in keep),
        sliding_window=shape.sliding_window,
        kv_heads=shape.kv_heads,
        next_tokens=top_predictions(model, out.logits[0, -1], top_k),
        forward_ms=forward_ms,
        memory=estimate,
    )
