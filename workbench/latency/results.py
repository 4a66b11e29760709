"""What a benchmark asks for (``BenchConfig``) and returns (``BackendResult`` per backend,
``BenchResult`` for the run): raw numbers, their JSON (the schema of ``workbench bench --json``)
and pandas tables. No torch: a saved result can be read and drawn without a model.

A backend whose process died is not a row of the tables: it is in ``BenchResult.failures``
(with its signal), and ``failures_frame()`` lists them. ``machine`` names the machine that
produced the numbers (the order of backends changes between machines)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import InvalidInputError
from .stats import Latency

if TYPE_CHECKING:
    import pandas as pd

    from .parity import ParityReport


@dataclass(frozen=True)
class BenchConfig:
    prompt_lengths: tuple[int, ...] = (16, 128, 512)
    new_tokens: int = 64
    decode_prompt_length: int = 128
    warmup: int = 1
    min_repeats: int = 3
    min_time_s: float = 2.0
    max_repeats: int = 30
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None  # None: the machine's core count
    parity_steps: int | None = None  # None: new_tokens
    quality_tokens: int = 1024  # held-out tokens scored for perplexity / KL (with a dataset)
    quality_window: int = 256

    def validate(self, context_length: int) -> "BenchConfig":
        if not self.prompt_lengths or min(self.prompt_lengths) < 1:
            raise InvalidInputError("Give at least one prompt length, each 1 or more tokens.")
        if self.new_tokens < 2:
            raise InvalidInputError("New tokens must be at least 2 (one prefill token, one decode step).")
        longest = max(max(self.prompt_lengths), self.decode_prompt_length)
        if longest + self.new_tokens > context_length:
            raise InvalidInputError(
                f"A prompt of {longest} tokens plus {self.new_tokens} new tokens exceeds this model's "
                f"context of {context_length}: use shorter prompt lengths or fewer new tokens."
            )
        if self.min_repeats < 1 or self.max_repeats < self.min_repeats or self.warmup < 0:
            raise InvalidInputError("Repeats: need 1 ≤ min_repeats ≤ max_repeats and warmup ≥ 0.")
        return self


@dataclass
class BackendResult:
    backend: str
    device: str
    settings: dict
    prefill: dict[int, Latency]
    decode: Latency
    ttft: Latency
    e2e: Latency
    new_tokens: int
    peak_rss_mb: float
    gpu_peak_mb: float | None
    weight_bytes: int
    tokens: list[int]

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / (self.e2e.p50 / 1000) if self.e2e.count else math.nan

    @property
    def weights_gb_per_s(self) -> float:
        """Weight bytes read per second at the decode p50 (every token reads all weights once)."""
        return self.weight_bytes / (self.decode.p50 / 1000) / 1e9 if self.decode.count else math.nan

    def to_json(self) -> dict:
        pct = lambda lat: {"p50": lat.p50, "p90": lat.p90, "p99": lat.p99}  # noqa: E731
        return {
            "backend": self.backend,
            "device": self.device,
            "prefill_ms": {str(k): pct(v) for k, v in self.prefill.items()},
            "decode_ms": pct(self.decode),
            "ttft_ms": self.ttft.p50,
            "tokens_per_s": self.tokens_per_s,
            "peak_rss_mb": self.peak_rss_mb,
            "gpu_peak_mb": self.gpu_peak_mb,
            "settings": self.settings,
            "weights_gb_per_s": self.weights_gb_per_s,
            "raw_ms": {
                "prefill": {str(k): v.values for k, v in self.prefill.items()},
                "decode": self.decode.values, "ttft": self.ttft.values, "e2e": self.e2e.values,
            },
        }


@dataclass
class BenchResult:
    model: str
    env: dict
    config: BenchConfig
    parity: dict[str, ParityReport]
    results: list[BackendResult]
    quality: dict = field(default_factory=dict)  # backend -> quality.PerplexityResult (with a dataset)
    # backend -> {"backend", "phase", "during", "signal", "returncode", "error"}: its process died
    failures: dict[str, dict] = field(default_factory=dict)

    @property
    def machine(self) -> str:
        """Which machine produced these numbers: CPU model, cores and vector flags (one line)."""
        from .environment import machine_label

        return machine_label(self.env)

    @property
    def bandwidth_gb_s(self) -> float:
        """The memory read ceiling measured in this run (GB/s), NaN if not measured."""
        return float(self.env.get("memory_read", {}).get("gb_s", math.nan))

    def result(self, backend: str) -> BackendResult:
        return next(r for r in self.results if r.backend == backend)

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "env": self.env,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.config.__dict__.items()},
            "parity": {
                name: {"max_abs_diff": p.max_abs_diff, "greedy_match": p.greedy_match,
                       "greedy_total": p.greedy_total, "passed": p.passed, "verdict": p.verdict,
                       "prompt_max_abs_diff": p.prompt_max_abs_diff,
                       "decode_max_abs_diff": p.decode_max_abs_diff,
                       "tolerance": p.tolerance if p.threshold.judge_logits else None,
                       "noise_floor": p.noise_floor, "logit_scale": p.logit_scale}
                for name, p in self.parity.items()
            },
            "results": [r.to_json() for r in self.results],
            "quality": {name: q.to_json() for name, q in self.quality.items()},
            "failures": self.failures,
            "machine": self.machine,
        }

    def frame(self) -> pd.DataFrame:
        """One row per (backend, metric, prompt length) with the statistics in ms."""
        import pandas as pd

        rows = []
        for r in self.results:
            items = [("prefill", n, lat) for n, lat in r.prefill.items()]
            ctx = self.config.decode_prompt_length
            items += [("decode", ctx, r.decode), ("ttft", ctx, r.ttft), ("e2e", ctx, r.e2e)]
            for metric, length, lat in items:
                rows.append({"backend": r.backend, "device": r.device, "metric": metric,
                             "prompt_length": length, **{f"{k}_ms" if k != "count" else k: v
                                                         for k, v in lat.stats().items()}})
        return pd.DataFrame(rows)

    def failures_frame(self) -> pd.DataFrame:
        """One row per failed backend: backend, during (what it was doing), signal, returncode, error."""
        import pandas as pd

        columns = ["backend", "during", "signal", "returncode", "error"]
        return pd.DataFrame([{k: f.get(k) for k in columns} | {"backend": name} for name, f in self.failures.items()],
                            columns=columns)

    def summary(self, baseline: str = "torch") -> pd.DataFrame:
        """One row per backend: decode p50, speed-up over ``baseline``, tokens/s, memory, parity."""
        import pandas as pd

        base = next((r for r in self.results if r.backend == baseline), None)
        rows = []
        for r in self.results:
            p = self.parity.get(r.backend)
            rows.append({
                "backend": r.backend,
                "device": r.device,
                "threads": r.settings.get("threads"),
                "decode_p50_ms": r.decode.p50,
                "decode_p90_ms": r.decode.p90,
                "speedup": (base.decode.p50 / r.decode.p50) if base else math.nan,
                "ttft_p50_ms": r.ttft.p50,
                "tokens_per_s": r.tokens_per_s,
                "prefill_p50_ms": r.prefill[max(r.prefill)].p50 if r.prefill else math.nan,
                "weight_mb_per_token": r.weight_bytes / 1e6,
                "weights_gb_per_s": r.weights_gb_per_s,
                "bandwidth_share": r.weights_gb_per_s / self.bandwidth_gb_s,
                "peak_rss_mb": r.peak_rss_mb,
                "parity": ("reference" if r.backend == baseline else
                           ("pass" if p and p.passed else "fail" if p else "not checked")),
                "max_abs_diff": p.max_abs_diff if p else (0.0 if r.backend == baseline else math.nan),
                "tolerance": p.tolerance if p and p.threshold.judge_logits else math.nan,
                "greedy_match": f"{p.greedy_match}/{p.greedy_total}" if p else "",
                "perplexity": q.perplexity if (q := self.quality.get(r.backend)) else math.nan,
                "kld_mean": (q.kld_mean if q.kld_mean is not None else 0.0) if q else math.nan,
            })
        return pd.DataFrame(rows)
