"""Which input tokens drove one next-token prediction: gradient × input, integrated gradients
and occlusion.

The explained number ``f`` is the *logit* of the target token at the last position (the model's
own logit, Gemma's softcapping included), as a function of the input embeddings ``x``
``(T, hidden)`` (Gemma's embedding scale included; GPT-2's position vectors are added inside the
model and are not attributed). Every method returns one score per token, the sum over ``hidden``:

- gradient × input: ``x · ∂f/∂x`` (one forward and backward).
- integrated gradients (Sundararajan et al., 2017): ``(x - x') · ∫₀¹ ∂f/∂x(x' + α(x - x')) dα`` with
  baseline ``x'`` (zero embeddings by default), the integral by the midpoint rule on up to
  ``steps`` intervals (3, 9, 27, … : each level reuses the last one's points), run in batches.
  Completeness: the scores sum to ``f(x) - f(x')``; refinement stops early once the error of
  that sum is within ``tolerance`` of ``|f(x) - f(x')|``, and the result reports the error.
- occlusion: replace a token's embedding (or a span's) by the baseline and measure how much
  ``f`` and the target's probability drop; no gradients.

Budget: texts longer than ``max_tokens`` keep their last ``max_tokens``; integrated gradients
runs in batches that fit half the free memory and stops tripling its steps before the measured
time per path point says the next level would exceed ``budget_s`` seconds; occlusion groups tokens into spans when one
forward per token would. ``notes`` says what was reduced.

The first position is kept as it is in the baseline (``keep_first``), so its score is 0 and it is
not occluded: models park attention on the first token, and moving its embedding along the path
makes the output jump (measured on SmolLM2: the target logit along a zero-baseline path swings
between -5 and 18 when the first token moves too, and settles when it stays). Gradients are taken with respect to the
embeddings only (the weights' ``requires_grad`` is off meanwhile, under ``model.lock``).
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from ..attention.budget import MEMORY_SHARE, available_memory
from ..attention.structure import model_shape
from ..attention.tokens import display_tokens
from ..common import human_bytes
from ..errors import InvalidInputError
from .lens import resolve_target
from .parts import input_embeddings, prepare

DEFAULT_STEPS = 27  # intervals of the path (3, 9, 27, 81, …: each level triples)
MIN_STEPS = 3  # the first level of the midpoint rule
MAX_TOKENS = 512
BUDGET_S = 30.0  # seconds for integrated gradients, and again for occlusion
# Cost of one occlusion forward in units of the measured gradient × input pass (measured 0.7× on
# SmolLM2 at 512 tokens on 2 busy cores, batched; less on short texts).
FORWARD_COST = 0.7
MIN_SPANS = 8  # fewer occluded spans than this say too little: occlusion is skipped instead
BASELINES = ("zero", "pad")
TOLERANCE = 0.01  # integrated gradients stop refining once the completeness error is this small


@dataclass
class AttributionResult:
    """Scores per token (float32 ``(T,)``, in logit units) for one target at the last position."""

    model: str
    token_ids: list[int]
    tokens: list[str]
    target_id: int
    target_token: str
    target_logit: float  # f(x)
    target_prob: float
    baseline_logit: float  # f(x')
    baseline: str
    grad_x_input: np.ndarray
    integrated: np.ndarray
    occlusion_logit: np.ndarray  # f(x) - f(x with the token's span replaced by the baseline)
    occlusion_prob: np.ndarray  # the same drop in the target's probability
    steps: int
    steps_asked: int
    batch: int
    occlusion_span: int  # tokens per occluded span (1 = each token alone; 0 = skipped, see notes)
    notes: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def completeness_error(self) -> float:
        """``|sum(IG) - (f(x) - f(x'))|`` in logit units."""
        return abs(float(self.integrated.sum()) - (self.target_logit - self.baseline_logit))

    @property
    def completeness_relative(self) -> float:
        """The completeness error over ``|f(x) - f(x')|``."""
        return self.completeness_error / max(abs(self.target_logit - self.baseline_logit), 1e-12)

    def scores(self, method: str) -> np.ndarray:
        return {"grad_x_input": self.grad_x_input, "integrated": self.integrated,
                "occlusion": self.occlusion_logit}[method]

    def to_json(self) -> dict:
        return {
            "model": self.model, "tokens": self.tokens, "token_ids": self.token_ids,
            "target": {"id": self.target_id, "token": self.target_token, "logit": self.target_logit,
                       "prob": self.target_prob},
            "baseline": self.baseline, "baseline_logit": self.baseline_logit,
            "grad_x_input": self.grad_x_input.tolist(), "integrated_gradients": self.integrated.tolist(),
            "occlusion_logit_drop": self.occlusion_logit.tolist(),
            "occlusion_prob_drop": self.occlusion_prob.tolist(),
            "steps": self.steps, "completeness_error": self.completeness_error,
            "completeness_relative": self.completeness_relative, "notes": self.notes,
        }


METHODS = {"grad_x_input": "gradient × input", "integrated": "integrated gradients", "occlusion": "occlusion"}


@contextmanager
def _inputs_only(module: torch.nn.Module):
    """Weights frozen (no gradient buffers for 100M+ parameters) while inside; restored after."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _target_logits(model, embeds: torch.Tensor, target: int) -> torch.Tensor:
    """``(B, T, hidden)`` embeddings -> ``(B,)`` the target's logit at the last position."""
    out = model.module(inputs_embeds=embeds, use_cache=False, logits_to_keep=1)
    return out.logits[:, -1, target].float()


def baseline_embeddings(model, embeds: torch.Tensor, baseline: str) -> torch.Tensor:
    """``(T, hidden)`` baseline: zeros, or the pad (else EOS) token's embedding at every position."""
    if baseline == "zero":
        return torch.zeros_like(embeds)
    if baseline == "pad":
        tok = model.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        if pad is None:
            raise InvalidInputError("The tokenizer has no pad or EOS token: use baseline 'zero'.")
        row = input_embeddings(model.module, torch.tensor([[pad]], device=embeds.device))[0, 0]
        return row.expand_as(embeds).clone()
    raise InvalidInputError(f"Unknown baseline '{baseline}': use one of {', '.join(BASELINES)}.")


def step_bytes(model, tokens: int) -> int:
    """Rough bytes one forward + backward over ``tokens`` tokens keeps for the backward pass:
    per layer, about 16 hidden-size and 4 intermediate-size activations per token, and (eager
    attention) three ``heads × T × T`` maps. Calibrated loosely on SmolLM2; an over-estimate."""
    s = model_shape(model)
    cfg = model.config
    inter = getattr(getattr(cfg, "text_config", None) or cfg, "intermediate_size", None) or 4 * s.hidden_size
    per_layer = tokens * (16 * s.hidden_size + 4 * inter) * 4 + 3 * s.heads * tokens * tokens * 4
    return s.layers * per_layer + tokens * s.hidden_size * 4 * 4


def integrate(gradients, delta: torch.Tensor, expected: float, steps: int, tolerance: float,
              budget_s: float) -> tuple[torch.Tensor, int, str]:
    """Integrated gradients by the midpoint rule on 3, 9, 27, … intervals of the path; each level
    keeps the last level's points (the midpoints of n intervals are midpoints of 3n intervals too)
    and computes only the new ones. An open rule: the baseline itself is never evaluated — at an
    all-zero embedding an RMSNorm's gradient is x / √eps, thousands of times its size on the path.

    ``gradients(alphas)`` returns the sum of ∂f/∂x over those path points ``(T, hidden)``;
    ``delta`` = x - baseline; ``expected`` = f(x) - f(baseline). Refines up to the largest level
    with at most ``steps`` intervals (at least 3), and stops earlier once the completeness error is
    within ``tolerance`` (relative), or before a level that the measured time per point says would
    pass ``budget_s``. Returns ``((T,) scores, intervals used, why it stopped: "steps" |
    "tolerance" | "time")``."""
    start = time.perf_counter()
    n = MIN_STEPS
    total = gradients((np.arange(n) + 0.5) / n)
    while True:
        scores = (delta * total / n).sum(-1)
        if abs(float(scores.sum()) - expected) <= tolerance * max(abs(expected), 1e-12):
            return scores, n, "tolerance"
        if 3 * n > max(steps, MIN_STEPS):
            return scores, n, "steps"
        if (time.perf_counter() - start) * 3 > budget_s:  # the next level has 2n new points: 2× the time so far
            return scores, n, "time"
        fine = (np.arange(3 * n) + 0.5) / (3 * n)
        total += gradients(np.delete(fine, np.arange(1, 3 * n, 3)))  # every third fine midpoint is old
        n *= 3


def attribute(model, text: str | None = None, *, ids: Sequence[int] | None = None,
              target: int | str | None = None, steps: int = DEFAULT_STEPS, baseline: str = "zero",
              max_tokens: int = MAX_TOKENS, budget_s: float = BUDGET_S,
              budget_bytes: int | None = None, occlusion: bool = True,
              tolerance: float = TOLERANCE, keep_first: bool = True) -> AttributionResult:
    """All three attributions of the target (default: the model's top-1 next token) after the text."""
    if not 1 <= int(steps) <= 512:
        raise InvalidInputError("Integrated gradients needs between 1 and 512 steps.")
    prepared = prepare(model, text, ids, max_tokens, "attribution")
    ids = prepared.ids
    notes = [prepared.note] if prepared.note else []
    T = len(ids)
    device = model.device
    budget = budget_bytes if budget_bytes is not None else int(available_memory() * MEMORY_SHARE)
    per_step = step_bytes(model, T)
    if per_step > budget:
        raise InvalidInputError(
            f"One backward pass over {T:,} tokens needs about {human_bytes(per_step)}, more than the "
            f"budget of {human_bytes(budget)}: shorten the text.")
    timings: dict[str, float] = {}
    with model.lock, _inputs_only(model.module):
        ids_t = torch.tensor([ids], device=device)
        with torch.no_grad():
            x = input_embeddings(model.module, ids_t)[0].detach().float()  # (T, hidden)
            base = baseline_embeddings(model, x, baseline)
            if keep_first and T > 1:
                base[0] = x[0]  # the first position stays: see the module docstring
            logits = model.module(inputs_embeds=x[None], use_cache=False, logits_to_keep=1).logits[0, -1].float()
            target_id = resolve_target(model, target, int(logits.argmax()))
            f_x = float(logits[target_id])
            prob = float(torch.softmax(logits, -1)[target_id])
            f_base = float(_target_logits(model, base[None], target_id)[0])

        # gradient × input
        start = time.perf_counter()
        xg = x[None].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(_target_logits(model, xg, target_id).sum(), xg)
        gxi = (grad[0] * x).sum(-1)
        one_pass = time.perf_counter() - start
        timings["grad_x_input"] = one_pass * 1000

        # integrated gradients
        start = time.perf_counter()
        batch = max(1, min(int(steps), budget // per_step))
        if batch < int(steps):
            notes.append(f"Integrated gradients ran {batch} path points at a time to stay within "
                         f"{budget / 2**30:.1f} GB.")

        def gradients(alphas: np.ndarray) -> torch.Tensor:
            """Sum over ``alphas`` of ∂f/∂x at baseline + α (x - baseline), ``(T, hidden)``."""
            total = torch.zeros_like(x)
            for a in range(0, len(alphas), batch):
                al = torch.tensor(alphas[a:a + batch], dtype=x.dtype, device=device)[:, None, None]
                path = (base[None] + al * (x - base)[None]).requires_grad_(True)  # (b, T, hidden)
                (g,) = torch.autograd.grad(_target_logits(model, path, target_id).sum(), path)
                total += g.sum(0)
            return total

        ig, used, stop = integrate(gradients, x - base, f_x - f_base, int(steps), tolerance,
                                   budget_s - (time.perf_counter() - start))
        timings["integrated"] = (time.perf_counter() - start) * 1000
        if stop == "time":
            over = timings["integrated"] / 1000 > budget_s
            notes.append(f"Integrated gradients stopped at {used} steps of the {int(steps)} asked: "
                         + (f"even the first {MIN_STEPS} took {timings['integrated'] / 1000:.0f} s, past the "
                            if over else "the next level would pass the ")
                         + f"{budget_s:.0f} s budget (the completeness error shows what that costs).")

        # occlusion
        span = 1
        occ_logit = np.zeros(T, dtype=np.float32)
        occ_prob = np.zeros(T, dtype=np.float32)
        if occlusion:
            first = 1 if keep_first and T > 1 else 0
            forward_s = FORWARD_COST * one_pass
            spans = min(T - first, int(budget_s / max(forward_s, 1e-6)))
            if spans < min(MIN_SPANS, T - first):
                span, starts = 0, []
                notes.append(f"Occlusion was skipped: one forward pass over {T:,} tokens takes about "
                             f"{forward_s:.1f} s here, so even {MIN_SPANS} spans would pass the {budget_s:.0f} s "
                             "budget. Shorten the text, or raise the budget.")
            else:
                span = -(-(T - first) // spans)
                starts = list(range(first, T, span))
                if span > 1:
                    notes.append(f"Occlusion replaced spans of {span} tokens at a time ({len(starts)} forward "
                                 f"passes instead of {T - first:,}) to stay within {budget_s:.0f} s.")
            fwd_batch = max(1, min(len(starts), int(budget // max(per_step // 4, 1))))
            start = time.perf_counter()
            with torch.no_grad():
                for a in range(0, len(starts), fwd_batch):
                    chunk = starts[a:a + fwd_batch]
                    batch_x = x[None].repeat(len(chunk), 1, 1)
                    for r, s in enumerate(chunk):
                        batch_x[r, s:s + span] = base[s:s + span]
                    out = model.module(inputs_embeds=batch_x, use_cache=False, logits_to_keep=1).logits[:, -1].float()
                    p = torch.softmax(out, -1)[:, target_id]
                    for r, s in enumerate(chunk):
                        occ_logit[s:s + span] = f_x - float(out[r, target_id])
                        occ_prob[s:s + span] = prob - float(p[r])
            timings["occlusion"] = (time.perf_counter() - start) * 1000
    return AttributionResult(
        model=model.card.id, token_ids=ids, tokens=display_tokens(model.tokenizer, ids), target_id=target_id,
        target_token=display_tokens(model.tokenizer, [target_id])[0], target_logit=f_x, target_prob=prob,
        baseline_logit=f_base, baseline=baseline, grad_x_input=gxi.detach().cpu().numpy().astype(np.float32),
        integrated=ig.detach().cpu().numpy().astype(np.float32), occlusion_logit=occ_logit,
        occlusion_prob=occ_prob, steps=used, steps_asked=int(steps), batch=batch, occlusion_span=span,
        notes=notes, timings_ms=timings,
    )
