"""Does a backend compute what torch computes? Logit differences and greedy-token agreement.

``check_parity(model, backend)`` runs torch eager (the reference) and the candidate greedily from
the same prompt for ``steps`` tokens, each with its own KV cache, and reports:

- ``prompt_max_abs_diff``: max |Δlogits| of the next-token logits after the prompt (prefill);
- ``decode_max_abs_diff``: max |Δlogits| over the cached decode steps *while both have produced
  the same tokens* (after the first different token the two read different text, and a logit
  difference would mean nothing);
- ``greedy_match`` of ``greedy_total``: positions where the greedy tokens are equal, and
  ``first_mismatch`` (None when all agree).

The logit bar is not a fixed number: fp32 itself gives different last bits when the same sums
are added in another order, and how far that reaches depends on the model, the logits' scale and
the machine's kernels (1e-4 passed on one machine and failed at 1.05e-4 on another, with every
token equal). So each check first measures that floor on this machine: the reference's own
logits computed a second way, with no KV cache, one pass over the whole sequence, on one
thread (other matrix shapes, other blocking, another summation order: what a different graph
does). ``noise_floor`` is the largest difference seen, and the bar is ::

    tolerance = max(TOLERANCE_FACTOR × noise_floor, MIN_ULPS × eps32 × max|logits|)

A graph of the same fp32 weights reorders the sums of every op, not of one pass, so it may drift
a few times the floor (``TOLERANCE_FACTOR``; docs/latency.md shows measured drifts), never by
orders of magnitude; the second term keeps the bar above float rounding when the floor reads 0.

Verdict, per export variant (``THRESHOLDS``): fp32, the fused fp32 graph, q4 (the GGUF's own
blocks, which de-quantize to exactly the fp32 weights torch runs) and their counterparts on ONNX
Runtime's own decode graph (gqa, gqa_q4) and onnxruntime-genai's loop on its builder's fp32
graph (genai_fp32) pass with max |Δlogits| ≤ tolerance and every greedy token equal. Graphs that
re-quantize weights (int8) or activations (q4a8, gqa_q4a8, genai_int4, llama.cpp) change logits
by design, so they are judged on tokens only, and their logit drift is reported, never hidden.
This module does not time anything (see ``harness``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..errors import InvalidInputError
from ..runtime.backends.torch_eager import TorchBackend
from ..runtime.generation import greedy

DEFAULT_PROMPT = "The capital of France is Paris. The quick brown fox jumps over the lazy dog, and"
TOLERANCE_FACTOR = 8.0  # a graph's drift over the floor (measured drifts: docs/quantized.md)
MIN_ULPS = 64  # the bar never falls below 64 float32 steps of the largest logit
EPS32 = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class Threshold:
    judge_logits: bool  # False: logits are reported, not judged (quantized graphs)
    all_tokens_equal: bool = True

    def describe(self, tolerance: float | None = None) -> str:
        parts = []
        if self.judge_logits:
            bar = f"{tolerance:.2g}" if tolerance is not None else "the tolerance"
            parts.append(f"max |Δlogits| ≤ {bar} ({TOLERANCE_FACTOR:g}× this machine's fp32 noise floor)")
        if self.all_tokens_equal:
            parts.append("all greedy tokens equal to torch")
        return " and ".join(parts)


# q4 computes with the GGUF's own weights, which are the fp32 weights torch runs: judged as fp32.
# int8 re-quantizes, q4a8 quantizes activations, llama.cpp ("gguf") does both its own way.
THRESHOLDS = {"fp32": Threshold(True), "fused": Threshold(True), "q4": Threshold(True),
              "gqa": Threshold(True), "gqa_q4": Threshold(True),  # ONNX Runtime's own graph, same bars
              "int8": Threshold(False), "q4a8": Threshold(False), "gqa_q4a8": Threshold(False),
              "genai_int4": Threshold(False),  # onnxruntime-genai's builder re-quantizes: judged on tokens
              "genai_fp32": Threshold(True),  # its builder's fp32 graph: the same weights, the fp32 bars
              "gguf": Threshold(False)}


def tolerance_for(noise_floor: float, logit_scale: float) -> float:
    """The logit bar for fp32 graphs (see the module docstring)."""
    return max(TOLERANCE_FACTOR * noise_floor, MIN_ULPS * EPS32 * logit_scale)


@dataclass(frozen=True)
class ParityReport:
    backend: str
    variant: str
    prompt_tokens: int
    prompt_max_abs_diff: float
    decode_max_abs_diff: float
    greedy_match: int
    greedy_total: int
    first_mismatch: int | None
    threshold: Threshold
    reference_tokens: tuple[int, ...]
    candidate_tokens: tuple[int, ...]
    noise_floor: float  # max |Δlogits| of torch against itself computed another way (fp32 only)
    logit_scale: float  # max |logits| of the reference over the compared steps

    @property
    def max_abs_diff(self) -> float:
        return max(self.prompt_max_abs_diff, self.decode_max_abs_diff)

    @property
    def tolerance(self) -> float:
        return tolerance_for(self.noise_floor, self.logit_scale)

    @property
    def passed(self) -> bool:
        t = self.threshold
        ok_logits = not t.judge_logits or self.max_abs_diff <= self.tolerance
        ok_tokens = not t.all_tokens_equal or self.greedy_match == self.greedy_total
        return ok_logits and ok_tokens

    @property
    def verdict(self) -> str:
        """One line for people, e.g. 'PASS (fused): max |Δlogits| 1e-04, 64/64 greedy tokens equal
        to torch (needs max |Δlogits| ≤ 3.1e-04 (8× this machine's fp32 noise floor) and ...)'."""
        word = "PASS" if self.passed else "FAIL"
        floor = f"; fp32 noise floor {self.noise_floor:.2g}" if self.threshold.judge_logits else ""
        return (
            f"{word} ({self.variant}): max |Δlogits| {self.max_abs_diff:.2g}, "
            f"{self.greedy_match}/{self.greedy_total} greedy tokens equal to torch "
            f"(needs {self.threshold.describe(self.tolerance)}{floor})"
        )

    def to_json(self) -> dict:
        """The bench JSON's parity entry plus the detail."""
        d = asdict(self)
        d["threshold"] = {"judge_logits": self.threshold.judge_logits,
                          "all_tokens_equal": self.threshold.all_tokens_equal,
                          "tolerance_factor": TOLERANCE_FACTOR, "min_ulps": MIN_ULPS}
        d["tolerance"] = self.tolerance
        d["reference_tokens"] = list(self.reference_tokens)
        d["candidate_tokens"] = list(self.candidate_tokens)
        d.update(max_abs_diff=self.max_abs_diff, passed=self.passed, verdict=self.verdict)
        return d


def _greedy(backend, ids: torch.Tensor, steps: int) -> tuple[list[int], list[torch.Tensor]]:
    """Greedy ``steps`` tokens; returns the tokens and the logits (V,) each was chosen from."""
    tokens, seen = [], []
    for token, logits in greedy(backend, ids, steps):
        tokens.append(token)
        seen.append(logits.float().cpu())
    backend.synchronize()
    return tokens, seen


def noise_floor(model, prompt_ids: list[int], tokens: list[int], logits: list[torch.Tensor]) -> float:
    """Largest |Δ| between ``logits`` (the reference's, step by step through the KV cache, after
    ``prompt_ids`` and each of ``tokens[:-1]``) and the same logits from one pass over the whole
    sequence without a cache, on one CPU thread: fp32's own variation on this machine."""
    seq = torch.tensor([prompt_ids + tokens[:-1]], dtype=torch.long, device=model.device)  # (1, T + S - 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            full = model.module(input_ids=seq, use_cache=False).logits[0].float().cpu()  # (T + S - 1, V)
    finally:
        torch.set_num_threads(threads)
    start = len(prompt_ids) - 1
    return max(float((full[start + i] - l).abs().max()) for i, l in enumerate(logits))


def check_parity(
    model,
    backend,
    prompt: str | list[int] = DEFAULT_PROMPT,
    steps: int = 16,
    variant: str | None = None,
    reference=None,
) -> ParityReport:
    """Compare ``backend`` with torch eager on ``model`` (see module docstring).

    ``prompt`` is text or token ids; ``variant`` picks the threshold (default: the backend's
    export variant, fp32 for anything else); ``reference`` overrides the torch backend.
    """
    ids = list(prompt) if not isinstance(prompt, str) else model.tokenizer(prompt)["input_ids"]
    room = model.context_length - len(ids)
    if not ids or room < 1 or steps < 1:
        raise InvalidInputError(
            f"Parity needs a non-empty prompt shorter than {model.context_length} tokens and at least "
            f"one step (got {len(ids)} tokens, {steps} steps): shorten the prompt."
        )
    steps = min(steps, room)
    variant = variant or getattr(getattr(backend, "export", None), "variant", None) or getattr(backend, "variant", "fp32")
    tensor = torch.tensor([ids], dtype=torch.long)  # (1, T)
    ref_tokens, ref_logits = _greedy(reference or TorchBackend(model), tensor, steps)
    got_tokens, got_logits = _greedy(backend, tensor, steps)
    prompt_diff = float((ref_logits[0] - got_logits[0]).abs().max())
    judged = THRESHOLDS.get(variant, THRESHOLDS["fp32"])
    floor = noise_floor(model, ids, ref_tokens, ref_logits) if judged.judge_logits else 0.0
    first = next((i for i, (a, b) in enumerate(zip(ref_tokens, got_tokens)) if a != b), None)
    agree = steps if first is None else first + 1  # logits at i were read after i equal tokens
    decode_diff = max((float((a - b).abs().max()) for a, b in zip(ref_logits[1:agree], got_logits[1:agree])), default=0.0)
    return ParityReport(
        backend=backend.name,
        variant=variant,
        prompt_tokens=len(ids),
        prompt_max_abs_diff=prompt_diff,
        decode_max_abs_diff=decode_diff,
        greedy_match=sum(a == b for a, b in zip(ref_tokens, got_tokens)),
        greedy_total=steps,
        first_mismatch=first,
        threshold=judged,
        reference_tokens=tuple(ref_tokens),
        candidate_tokens=tuple(got_tokens),
        noise_floor=floor,
        logit_scale=max(float(l.abs().max()) for l in ref_logits),
    )
