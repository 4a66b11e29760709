"""Does a backend compute what torch computes? Logit differences and greedy-token agreement.

``check_parity(model, backend)`` runs torch eager (the reference) and the candidate greedily from
the same prompt for ``steps`` tokens, each with its own KV cache, and reports:

- ``prompt_max_abs_diff``: max |Δlogits| of the next-token logits after the prompt (prefill);
- ``decode_max_abs_diff``: max |Δlogits| over the cached decode steps *while both have produced
  the same tokens* (after the first different token the two read different text, and a logit
  difference would mean nothing);
- ``greedy_match`` of ``greedy_total``: positions where the greedy tokens are equal, and
  ``first_mismatch`` (None when all agree).

Verdict, per export variant (``THRESHOLDS``): fp32, and the fused fp32 graph, pass with
max |Δlogits| ≤ 1e-4 and every greedy token equal. Quantized graphs change logits by design, so
int8 is judged on tokens only, and its logit drift is reported, never hidden. This module does not
time anything (see ``bench``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..errors import InvalidInputError
from ..runtime.backends.torch_eager import TorchBackend
from ..runtime.sampling import argmax

DEFAULT_PROMPT = "The capital of France is Paris. The quick brown fox jumps over the lazy dog, and"


@dataclass(frozen=True)
class Threshold:
    max_abs_diff: float | None  # None: logits are not judged
    all_tokens_equal: bool = True

    def describe(self) -> str:
        parts = []
        if self.max_abs_diff is not None:
            parts.append(f"max |Δlogits| ≤ {self.max_abs_diff:g}")
        if self.all_tokens_equal:
            parts.append("all greedy tokens equal to torch")
        return " and ".join(parts)


THRESHOLDS = {"fp32": Threshold(1e-4), "fused": Threshold(1e-4), "int8": Threshold(None)}


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

    @property
    def max_abs_diff(self) -> float:
        return max(self.prompt_max_abs_diff, self.decode_max_abs_diff)

    @property
    def passed(self) -> bool:
        t = self.threshold
        ok_logits = t.max_abs_diff is None or self.max_abs_diff <= t.max_abs_diff
        ok_tokens = not t.all_tokens_equal or self.greedy_match == self.greedy_total
        return ok_logits and ok_tokens

    @property
    def verdict(self) -> str:
        """One line for people, e.g. 'PASS: max |Δlogits| 5.6e-05 ≤ 0.0001; 64/64 greedy tokens equal'."""
        word = "PASS" if self.passed else "FAIL"
        return (
            f"{word} ({self.variant}): max |Δlogits| {self.max_abs_diff:.2g}, "
            f"{self.greedy_match}/{self.greedy_total} greedy tokens equal to torch "
            f"(needs {self.threshold.describe()})"
        )

    def to_json(self) -> dict:
        """The bench JSON's parity entry plus the detail."""
        d = asdict(self)
        d["threshold"] = {"max_abs_diff": self.threshold.max_abs_diff, "all_tokens_equal": self.threshold.all_tokens_equal}
        d["reference_tokens"] = list(self.reference_tokens)
        d["candidate_tokens"] = list(self.candidate_tokens)
        d.update(max_abs_diff=self.max_abs_diff, passed=self.passed, verdict=self.verdict)
        return d


def _greedy(backend, ids: torch.Tensor, steps: int) -> tuple[list[int], list[torch.Tensor]]:
    """Greedy ``steps`` tokens; returns the tokens and the logits (V,) each was chosen from."""
    logits, state = backend.prefill(ids)
    tokens, seen = [], []
    for i in range(steps):
        logits = logits.float().cpu()
        seen.append(logits)
        tokens.append(argmax(logits))
        if i + 1 < steps:
            logits, state = backend.step(tokens[-1], state)
    backend.synchronize()
    return tokens, seen


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
    variant = variant or getattr(getattr(backend, "export", None), "variant", "fp32")
    tensor = torch.tensor([ids], dtype=torch.long)  # (1, T)
    ref_tokens, ref_logits = _greedy(reference or TorchBackend(model), tensor, steps)
    got_tokens, got_logits = _greedy(backend, tensor, steps)
    prompt_diff = float((ref_logits[0] - got_logits[0]).abs().max())
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
        threshold=THRESHOLDS.get(variant, THRESHOLDS["fp32"]),
        reference_tokens=tuple(ref_tokens),
        candidate_tokens=tuple(got_tokens),
    )
