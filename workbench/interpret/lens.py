"""The logit lens: what each layer would predict if the model stopped there.

For a text of T tokens, transformers' ``output_hidden_states`` gives L + 1 residual streams
``(T, hidden)``: entry 0 is the input embedding, entry l (1 ≤ l < L) the output of block l, and
entry L the output of the last block *with the final norm already applied* (transformers 5 puts
the normed state there, so ``lm_head(hidden_states[L])`` is exactly the model's logits). The lens
of layer l is therefore

    l < L:  softmax(unembed(final_norm(hidden_states[l])))
    l = L:  softmax(unembed(hidden_states[L]))          # no second norm: it equals the model's output

with ``unembed`` = the LM head plus Gemma's final logit softcapping when the config has one.
Layers are numbered 1..L (the embedding, layer 0, is not lensed).

The full distributions (L × T × vocab floats: 3 GB for SmolLM2 at 512 tokens) are never kept: the
lens is computed one layer and one block of positions at a time and only the top-k, the target
token's probability and rank, and the final top-1 are kept.
"""
from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..attention.tokens import display_tokens
from ..errors import InvalidInputError
from .parts import final_norm, prepare, unembed

MAX_POSITIONS = 512  # positions lensed; a longer text is read whole but lensed at its last ones
MAX_TOKENS = 4096  # tokens the model reads for the lens (forward with hidden states)
CHUNK = 128  # positions per block when unembedding


@dataclass
class LensResult:
    """Logit lens of one text. Arrays are indexed ``[layer - 1, position index]``; the position
    index ``i`` is text position ``positions[i]``. Probabilities are floats in [0, 1]; ranks are
    1-based (1 = the layer's top token)."""

    model: str
    token_ids: list[int]
    tokens: list[str]  # display tokens of the whole text
    positions: np.ndarray  # int64 (P,) text positions lensed (the last P of the text)
    top_ids: np.ndarray  # int64 (L, P, k)
    top_probs: np.ndarray  # float32 (L, P, k)
    target_id: int
    target_token: str
    target_prob: np.ndarray  # float32 (L, P): the target token's probability
    target_rank: np.ndarray  # int64 (L, P)
    labels: dict[int, str] = field(default_factory=dict)  # token id -> display token
    note: str = ""
    forward_ms: float = 0.0
    lens_ms: float = 0.0

    @property
    def num_layers(self) -> int:
        return int(self.top_ids.shape[0])

    @property
    def final_ids(self) -> np.ndarray:
        """(P,) the model's own top-1 next token at each lensed position (layer L)."""
        return self.top_ids[-1, :, 0]

    def first_top1(self) -> np.ndarray:
        """(P,) the first layer (1..L) whose top-1 is already the final answer at each position."""
        hit = self.top_ids[:, :, 0] == self.final_ids[None, :]  # (L, P), row L is all True
        return hit.argmax(axis=0) + 1

    def label(self, token_id: int) -> str:
        return self.labels.get(int(token_id), "")

    def top(self, layer: int, index: int) -> list[dict]:
        """Top-k of ``layer`` (1..L) at position index ``index``: ``[{id, token, prob}]``."""
        if not 1 <= layer <= self.num_layers:
            raise InvalidInputError(f"Layer {layer} does not exist: layers are 1–{self.num_layers}.")
        return [{"id": int(i), "token": self.label(i), "prob": float(p)}
                for i, p in zip(self.top_ids[layer - 1, index], self.top_probs[layer - 1, index])]

    def to_json(self) -> dict:
        """``tokens``; ``top[l - 1][i]``: layer l's top-k at lensed position ``positions[i]``;
        the target's probability/rank per layer at the last position; the first top-1 layers."""
        L, P = self.top_ids.shape[:2]
        return {
            "model": self.model,
            "tokens": self.tokens,
            "token_ids": self.token_ids,
            "layers": list(range(1, L + 1)),
            "positions": self.positions.tolist(),
            "top": [[self.top(layer, i) for i in range(P)] for layer in range(1, L + 1)],
            "target": {"id": self.target_id, "token": self.target_token,
                       "prob": self.target_prob[:, -1].tolist(), "rank": self.target_rank[:, -1].tolist()},
            "first_top1_layer": self.first_top1().tolist(),
            "note": self.note,
        }


def hidden_states(model, ids: Sequence[int]) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """One forward pass: the L + 1 hidden states, each ``(T, hidden)``, and the model's own
    float32 logits ``(T, vocab)`` (for checks). Holds ``model.lock`` (no hooks from others)."""
    with model.lock, torch.inference_mode():
        out = model.module(input_ids=torch.tensor([list(ids)], device=model.device),
                           output_hidden_states=True, use_cache=False)
    return tuple(h[0] for h in out.hidden_states), out.logits[0].float()


def layer_logits(model, states: Sequence[torch.Tensor], layer: int, rows: slice = slice(None)) -> torch.Tensor:
    """Lens logits ``(rows, vocab)`` float32 of ``layer`` (1..L) from ``hidden_states``'s output."""
    L = len(states) - 1
    with torch.inference_mode():
        h = states[layer][rows]
        normed = h if layer == L else final_norm(model.module)(h)  # entry L is already normed
        return unembed(model.module, normed)


def lens_log_probs(model, states: Sequence[torch.Tensor], positions: np.ndarray,
                   chunk: int = CHUNK) -> Iterator[tuple[int, slice, torch.Tensor]]:
    """Yield ``(layer, index slice, log-probs (len(slice), vocab))`` for layers 1..L over the
    lensed ``positions`` (contiguous, ascending), a block of at most ``chunk`` positions at a time."""
    first = int(positions[0])
    for layer in range(1, len(states)):
        for a in range(0, len(positions), chunk):
            b = min(a + chunk, len(positions))
            logits = layer_logits(model, states, layer, slice(first + a, first + b))
            yield layer, slice(a, b), torch.log_softmax(logits, dim=-1)


def token_labels(tokenizer, ids) -> dict[int, str]:
    """Each id on its own as a display token (alternatives, not a sequence)."""
    unique = sorted({int(i) for i in np.asarray(ids).ravel()})
    return {i: display_tokens(tokenizer, [i])[0] for i in unique}


def logit_lens(model, text: str | None = None, *, ids: Sequence[int] | None = None, top_k: int = 5,
               target: int | str | None = None, max_positions: int = MAX_POSITIONS,
               max_tokens: int = MAX_TOKENS, states: Sequence[torch.Tensor] | None = None) -> LensResult:
    """The logit lens of ``text`` (or ``ids``) at every layer.

    ``target``: a token id or a string that is one token (leading space included, e.g. " Paris");
    by default the model's own top-1 next token after the text. Texts longer than ``max_tokens``
    keep their last ``max_tokens`` tokens; only the last ``max_positions`` positions are lensed
    (``note`` says what was cut). ``states``: this text's ``hidden_states`` when the caller has
    them already (``ids`` must then be given and within the caps), to skip the forward pass."""
    if not 1 <= top_k <= 50:
        raise InvalidInputError("top_k must be between 1 and 50.")
    prepared = prepare(model, text, ids, max_tokens, "the logit lens")
    ids = prepared.ids
    T = len(ids)
    P = min(T, max(1, int(max_positions)))
    notes = [prepared.note] if prepared.note else []
    if P < T:
        notes.append(f"The lens is drawn for the last {P:,} of {T:,} positions (the model reads all {T:,}).")
    positions = np.arange(T - P, T, dtype=np.int64)

    start = time.perf_counter()
    if states is None:
        states, _ = hidden_states(model, ids)
    forward_ms = (time.perf_counter() - start) * 1000
    L = len(states) - 1
    final_logits = layer_logits(model, states, L, slice(T - 1, T))[0]
    target_id = resolve_target(model, target, int(final_logits.argmax()))

    top_ids = np.empty((L, P, top_k), dtype=np.int64)
    top_probs = np.empty((L, P, top_k), dtype=np.float32)
    t_prob = np.empty((L, P), dtype=np.float32)
    t_rank = np.empty((L, P), dtype=np.int64)
    start = time.perf_counter()
    for layer, rows, logp in lens_log_probs(model, states, positions):
        p, i = torch.topk(logp, top_k, dim=-1)
        top_ids[layer - 1, rows] = i.cpu().numpy()
        top_probs[layer - 1, rows] = p.exp().cpu().numpy()
        t = logp[:, target_id]
        t_prob[layer - 1, rows] = t.exp().cpu().numpy()
        t_rank[layer - 1, rows] = ((logp > t[:, None]).sum(-1) + 1).cpu().numpy()
    lens_ms = (time.perf_counter() - start) * 1000
    labels = token_labels(model.tokenizer, np.append(top_ids.ravel(), target_id))
    return LensResult(
        model=model.card.id, token_ids=ids, tokens=display_tokens(model.tokenizer, ids), positions=positions,
        top_ids=top_ids, top_probs=top_probs, target_id=target_id, target_token=labels[target_id],
        target_prob=t_prob, target_rank=t_rank, labels=labels, note=" ".join(notes),
        forward_ms=forward_ms, lens_ms=lens_ms,
    )


def resolve_target(model, target: int | str | None, default: int) -> int:
    """A target token id from an id, a one-token string, or ``default`` when None."""
    vocab = int(model.module.get_output_embeddings().weight.shape[0])
    if target is None or target == "":
        return int(default)
    if isinstance(target, str):
        found = model.tokenizer(target, add_special_tokens=False)["input_ids"]
        if len(found) != 1:
            shown = display_tokens(model.tokenizer, found) if found else []
            raise InvalidInputError(
                f"The target {target!r} is {len(found)} tokens ({' | '.join(shown)}), not one: pick a single "
                "token (mind the leading space, e.g. ' Paris'), or give its id.")
        target = found[0]
    if not 0 <= int(target) < vocab:
        raise InvalidInputError(f"Token id {target} is outside the vocabulary (0–{vocab - 1}).")
    return int(target)
