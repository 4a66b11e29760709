"""A model and its fine-tune on one prompt: next-token distributions, logit lens maps and
attention heads, side by side.

The two models must share a tokenizer (the same vocabulary, token for token), so that the same
text is the same ids and a distribution over one vocabulary can be compared with the other's.
``compare(base, tuned, text)`` needs both loaded with ``attn_implementation="eager"`` (for the
attention part) and returns a ``Comparison``:

- ``kl``: KL(base ‖ tuned) of the next-token distributions after the text, in nats;
- ``rose`` / ``fell``: the tokens whose probability rose / fell most (tuned minus base);
- ``base_lens`` / ``tuned_lens``: each model's ``LensResult``; ``lens_kl`` ``(L, P)``: KL(base ‖ tuned)
  of the two lens distributions at every layer and lensed position;
- ``head_change`` ``(L, H)``: per head, the Jensen–Shannon distance (base-2 logs, in [0, 1]) between
  the two models' attention rows, averaged over query positions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..attention.maps import attention
from ..attention.structure import model_shape
from ..attention.tokens import display_tokens
from ..errors import InvalidInputError
from .lens import LensResult, hidden_states, lens_log_probs, logit_lens
from .parts import prepare

TOP_CHANGES = 10
MAX_TOKENS = 512
MAX_POSITIONS = 64  # positions lensed (each model, each layer: a positions × vocab unembedding)


class TokenizerMismatchError(InvalidInputError):
    """The two models read text differently, so their predictions cannot be compared."""


@dataclass(frozen=True)
class Change:
    id: int
    token: str
    base_prob: float
    tuned_prob: float

    @property
    def delta(self) -> float:
        return self.tuned_prob - self.base_prob


@dataclass
class Comparison:
    base: str
    tuned: str
    token_ids: list[int]
    tokens: list[str]
    kl: float  # nats
    rose: list[Change]
    fell: list[Change]
    base_lens: LensResult
    tuned_lens: LensResult
    lens_kl: np.ndarray  # float32 (L, P)
    head_change: np.ndarray | None  # float32 (L, H); None when the shapes differ
    note: str = ""

    def to_json(self) -> dict:
        row = lambda c: {"id": c.id, "token": c.token, "base": c.base_prob, "tuned": c.tuned_prob}
        return {"base": self.base, "tuned": self.tuned, "tokens": self.tokens, "kl_nats": self.kl,
                "rose": [row(c) for c in self.rose], "fell": [row(c) for c in self.fell],
                "lens_kl": self.lens_kl.tolist(),
                "head_change": None if self.head_change is None else self.head_change.tolist(),
                "note": self.note}


def check_same_tokenizer(base, tuned) -> None:
    """Raise ``TokenizerMismatchError`` unless both tokenizers map the same strings to the same ids."""
    a, b = base.tokenizer.get_vocab(), tuned.tokenizer.get_vocab()
    if a != b:
        only_a, only_b = len(set(a) - set(b)), len(set(b) - set(a))
        moved = sum(1 for t in set(a) & set(b) if a[t] != b[t])
        raise TokenizerMismatchError(
            f"{base.card.name} and {tuned.card.name} use different tokenizers ({len(a):,} vs {len(b):,} "
            f"tokens; {only_a:,} only in the first, {only_b:,} only in the second, {moved:,} with other ids), "
            "so the same text is different ids and their predictions cannot be compared. Pick a model and "
            "a fine-tune of it.")


def kl_divergence(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) in nats over the last axis of two log-probability tensors."""
    return (logp.exp() * (logp - logq)).sum(-1).clamp_min(0)


def js_distance(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen–Shannon distance (base 2, in [0, 1]) between distributions on the last axis."""
    m = (p + q) / 2

    def kl(a, b):
        out = np.zeros_like(a)
        np.log2(a / np.where(b > 0, b, 1), out=out, where=a > 0)
        return (a * out).sum(-1)

    return np.sqrt(np.clip((kl(p, m) + kl(q, m)) / 2, 0, 1))


def head_changes(base_weights: np.ndarray, tuned_weights: np.ndarray) -> np.ndarray:
    """``(L, H, T, T)`` × 2 -> ``(L, H)`` mean JS distance of the attention rows, one layer at a time."""
    return np.stack([js_distance(base_weights[i], tuned_weights[i]).mean(-1)
                     for i in range(base_weights.shape[0])]).astype(np.float32)


def compare(base, tuned, text: str | None = None, *, ids=None, top: int = TOP_CHANGES,
            max_tokens: int = MAX_TOKENS, max_positions: int = MAX_POSITIONS, heads: bool = True) -> Comparison:
    """Compare ``base`` and ``tuned`` (loaded ``Model``s) on one text (see the module docstring)."""
    check_same_tokenizer(base, tuned)
    prepared = prepare(base, text, ids, max_tokens, "the comparison")
    both = prepare(tuned, ids=prepared.ids, max_tokens=max_tokens)  # the tuned model's capability and context
    ids = both.ids
    notes = [n for n in (prepared.note, both.note) if n]
    (sa, logits_a), (sb, logits_b) = hidden_states(base, ids), hidden_states(tuned, ids)  # one forward each
    base_lens = logit_lens(base, ids=ids, max_positions=max_positions, states=sa)
    tuned_lens = logit_lens(tuned, ids=ids, max_positions=max_positions, target=base_lens.target_id, states=sb)
    positions = base_lens.positions
    if base_lens.note:
        notes.append(base_lens.note)
    same_depth = len(sa) == len(sb)
    L = len(sa) - 1
    lens_kl = np.zeros((L, len(positions)), dtype=np.float32)
    final_a = final_b = None
    if same_depth:
        for (layer, rows, la), (_, _, lb) in zip(lens_log_probs(base, sa, positions),
                                                 lens_log_probs(tuned, sb, positions)):
            lens_kl[layer - 1, rows] = kl_divergence(la, lb).cpu().numpy()
            if layer == L and rows.stop == len(positions):
                final_a, final_b = la[-1], lb[-1]
    else:
        notes.append(f"The models have {len(sa) - 1} and {len(sb) - 1} layers: their lens maps are shown "
                     "side by side but not subtracted.")
    if final_a is None:
        final_a, final_b = torch.log_softmax(logits_a[-1], -1), torch.log_softmax(logits_b[-1], -1)
    kl = float(kl_divergence(final_a, final_b))
    delta = (final_b.exp() - final_a.exp()).cpu().numpy()
    order = np.argsort(delta)

    def change(i: int) -> Change:
        return Change(int(i), display_tokens(base.tokenizer, [int(i)])[0],
                      float(final_a[i].exp()), float(final_b[i].exp()))

    rose = [change(i) for i in order[::-1][:top] if delta[i] > 0]
    fell = [change(i) for i in order[:top] if delta[i] < 0]

    head_change = None
    if heads:
        if model_shape(base).layers == model_shape(tuned).layers and model_shape(base).heads == model_shape(tuned).heads:
            wa = attention(base, ids=ids).weights
            wb = attention(tuned, ids=ids).weights
            head_change = head_changes(wa, wb)
            del wa, wb
        else:
            notes.append("The models' layers or heads differ: their attention heads are not compared.")
    return Comparison(base.card.id, tuned.card.id, ids, display_tokens(base.tokenizer, ids), kl, rose, fell,
                      base_lens, tuned_lens, lens_kl if same_depth else np.zeros((0, 0), np.float32),
                      head_change, " ".join(notes))
