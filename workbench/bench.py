"""Latency of backends measured the way optimum-benchmark and ONNX Runtime's transformer
benchmarks measure it.

Method: per backend, ``warmup`` untimed runs of every measurement first; then repeats until both
``min_repeats`` and ``min_time_s`` are reached (capped at ``max_repeats``), the backends taking
turns round by round so that a change in machine load hits all of them alike. Greedy decoding,
exactly ``new_tokens`` tokens (min new tokens = max new tokens, EOS ignored), fixed seed and fixed
prompts (a fixed text cut to each length). Clocks are read after ``backend.synchronize()``; on a
GPU torch's CUDA events time the work.

Measures, all in milliseconds unless named otherwise: prefill latency per prompt length
(``prefill``), per-token decode latency (``decode``, one value per cached step, prompt of
``decode_prompt_length`` tokens), time to first token (``ttft``: prefill + choosing the token),
end-to-end time for ``new_tokens`` tokens (``e2e``) and ``tokens_per_s`` (new_tokens / e2e p50);
peak resident memory of this process while the backend ran (RSS sampled every 10 ms during the
untimed warm-up runs, so the sampling thread does not slow the timed ones; it includes everything
the process holds, e.g. the torch model) and GPU memory on GPU.

Results are numbers: ``BenchResult.frame()`` / ``summary()`` (pandas) and ``to_json()`` (the
schema of the ``workbench bench`` command). Formatting happens in pages, the CLI and
``latency_plots``. Measured tokens/s are stored per model and backend (``record_speeds``,
``measured_speeds``) for the Store page.
"""
from __future__ import annotations

import fcntl
import importlib.metadata as md
import json
import math
import os
import platform
import random
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import torch

from .errors import InvalidInputError
from .fetch import Progress, _quiet
from .generation import argmax
from .parity import ParityReport, check_parity
from .store import Store

BENCH_TEXT = (
    "The history of computing is a story of people trying to make machines do arithmetic faster. "
    "Early mechanical calculators gave way to relays, then vacuum tubes, then transistors, and each "
    "step made memory cheaper and larger. Today a small language model can run on a laptop, and the "
    "time it takes to produce one word depends mostly on how fast the weights can be read from memory. "
)
SPEEDS_FILE = "speeds.json"


@dataclass
class Latency:
    """Raw durations in ms and their statistics (percentiles by linear interpolation)."""

    values: list[float] = field(default_factory=list)

    def add(self, ms: float) -> None:
        self.values.append(float(ms))

    @property
    def count(self) -> int:
        return len(self.values)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.values, q)) if self.values else math.nan

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p90(self) -> float:
        return self.percentile(90)

    @property
    def p95(self) -> float:
        return self.percentile(95)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def stdev(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    @property
    def total(self) -> float:
        return float(sum(self.values))

    def stats(self) -> dict[str, float]:
        return {"count": self.count, "mean": self.mean, "stdev": self.stdev, "p50": self.p50,
                "p90": self.p90, "p95": self.p95, "p99": self.p99,
                "min": min(self.values, default=math.nan), "max": max(self.values, default=math.nan)}


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
                       "decode_max_abs_diff": p.decode_max_abs_diff}
                for name, p in self.parity.items()
            },
            "results": [r.to_json() for r in self.results],
        }

    def frame(self) -> pd.DataFrame:
        """One row per (backend, metric, prompt length) with the statistics in ms."""
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

    def summary(self, baseline: str = "torch") -> pd.DataFrame:
        """One row per backend: decode p50, speed-up over ``baseline``, tokens/s, memory, parity."""
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
                "weights_gb_per_s": r.weights_gb_per_s,
                "peak_rss_mb": r.peak_rss_mb,
                "parity": ("reference" if r.backend == baseline else
                           ("pass" if p and p.passed else "fail" if p else "not checked")),
                "max_abs_diff": p.max_abs_diff if p else (0.0 if r.backend == baseline else math.nan),
                "greedy_match": f"{p.greedy_match}/{p.greedy_total}" if p else "",
            })
        return pd.DataFrame(rows)


# --- environment ----------------------------------------------------------------------------

def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    """CPU model, cores, load, GPU and library versions: recorded with every result."""
    versions = {}
    for lib in ("torch", "transformers", "onnxruntime", "onnxruntime-gpu", "onnx", "onnxruntime-genai", "numpy"):
        try:
            versions[lib] = md.version(lib)
        except md.PackageNotFoundError:
            pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    env = {
        "cpu": _cpu_model(),
        "cores": cores,
        "logical_cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "versions": versions,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import onnxruntime as ort

        env["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError:
        pass
    return env


# --- measuring ------------------------------------------------------------------------------

def bench_prompt(tokenizer, length: int) -> list[int]:
    """A fixed prompt of exactly ``length`` token ids (the bench text, repeated and cut)."""
    ids: list[int] = []
    piece = tokenizer(BENCH_TEXT, add_special_tokens=False)["input_ids"]
    if not piece:
        raise InvalidInputError("The tokenizer turned the benchmark text into no tokens.")
    while len(ids) < length:
        ids += piece
    return ids[:length]


class _Clock:
    """Wall time of a block, after synchronizing the backend; CUDA events for torch on a GPU."""

    def __init__(self, backend):
        self.backend = backend
        self.cuda = backend.device.startswith("cuda") and torch.cuda.is_available() and backend.name == "torch"

    def start(self):
        self.backend.synchronize()
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def ms_since(self, mark) -> float:
        self.backend.synchronize()
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            end.synchronize()
            return float(mark.elapsed_time(end))
        return (time.perf_counter() - mark) * 1000


class _MemorySampler:
    """Peak RSS (and GPU memory in use) of this process, sampled on a thread every 10 ms;
    ``enabled=False`` samples nothing (peaks stay 0)."""

    def __init__(self, gpu: bool, enabled: bool = True):
        self.proc, self.gpu, self.enabled = psutil.Process(), gpu and torch.cuda.is_available(), enabled
        self.peak_rss, self.peak_gpu, self._stop = 0, 0, threading.Event()

    def _sample(self):
        self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)
        if self.gpu:
            free, total = torch.cuda.mem_get_info()
            self.peak_gpu = max(self.peak_gpu, total - free)

    def _loop(self):
        while not self._stop.wait(0.01):
            self._sample()

    def __enter__(self):
        if self.enabled:
            self._sample()
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._stop.set()
            self._thread.join()
            self._sample()


def _prefill_once(backend, ids: torch.Tensor) -> float:
    clock = _Clock(backend)
    mark = clock.start()
    backend.prefill(ids)
    return clock.ms_since(mark)


def _generate_once(backend, ids: torch.Tensor, new_tokens: int):
    """Greedy ``new_tokens`` tokens; returns (ttft ms, [per-step ms], e2e ms, tokens)."""
    clock = _Clock(backend)
    mark = clock.start()
    logits, state = backend.prefill(ids)
    tokens = [argmax(logits)]
    ttft = clock.ms_since(mark)
    steps = []
    for _ in range(new_tokens - 1):
        step_mark = clock.start()
        logits, state = backend.step(tokens[-1], state)
        tokens.append(argmax(logits))
        steps.append(clock.ms_since(step_mark))
    return ttft, steps, clock.ms_since(mark), tokens


def _weight_bytes(backend, model) -> int:
    export = getattr(backend, "export", None)
    if export is not None:
        return int(export.size_bytes)
    seen, total = set(), 0
    for p in model.module.parameters():  # tied weights are one tensor: count them once
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel() * p.element_size()
    return total


def run_benchmark(
    model,
    backends: dict[str, object],
    config: BenchConfig = BenchConfig(),
    progress: Progress = _quiet,
    parity: bool = True,
) -> BenchResult:
    """Benchmark ready ``backends`` (name -> ``Backend``) on a loaded ``model``.

    With ``parity`` every backend other than ``torch`` is also checked against torch eager
    (``parity.check_parity`` over ``config.parity_steps`` greedy tokens).
    """
    from .ort_backend import backend_settings

    config = config.validate(model.context_length)
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    env = environment()
    names = list(backends)
    prompts = {n: torch.tensor([bench_prompt(model.tokenizer, n)]) for n in config.prompt_lengths}
    decode_ids = torch.tensor([bench_prompt(model.tokenizer, config.decode_prompt_length)])
    tasks = [("prefill", n) for n in config.prompt_lengths] + [("generate", config.decode_prompt_length)]
    prefill = {b: {n: Latency() for n in config.prompt_lengths} for b in names}
    decode, ttft, e2e = ({b: Latency() for b in names} for _ in range(3))
    tokens: dict[str, list[int]] = {}
    peaks = {b: [0, 0] for b in names}
    total_steps = len(tasks) * len(names) + len(names)
    done = 0

    def run(name, task, length, record):
        # memory is sampled on the untimed warm-up runs (the same work): the sampling thread
        # cost about 0.8 ms a token, 3 %, when it ran beside timed decoding on 2 cores
        backend = backends[name]
        with _MemorySampler(backend.device.startswith("cuda"), enabled=not record or config.warmup == 0) as mem:
            if task == "prefill":
                ms = _prefill_once(backend, prompts[length])
                if record:
                    prefill[name][length].add(ms)
                spent = ms
            else:
                first, steps, total, toks = _generate_once(backend, decode_ids, config.new_tokens)
                if record:
                    ttft[name].add(first)
                    e2e[name].add(total)
                    for s in steps:
                        decode[name].add(s)
                    tokens[name] = toks
                spent = total
        peaks[name][0] = max(peaks[name][0], mem.peak_rss)
        peaks[name][1] = max(peaks[name][1], mem.peak_gpu)
        return spent

    for name in names:
        progress(done / total_steps, f"warming up {name}")
        for task, length in tasks:
            for _ in range(config.warmup):
                run(name, task, length, record=False)
        done += 1
    for task, length in tasks:
        count = {b: 0 for b in names}
        spent = {b: 0.0 for b in names}
        label = f"prefill {length} tokens" if task == "prefill" else f"decoding {config.new_tokens} tokens"
        while True:
            due = [b for b in names if count[b] < config.max_repeats
                   and (count[b] < config.min_repeats or spent[b] < config.min_time_s * 1000)]
            if not due:
                break
            for name in due:  # one round: every backend that still needs runs takes a turn
                spent[name] += run(name, task, length, record=True)
                count[name] += 1
            inner = min(1.0, min(count[b] / config.min_repeats for b in names))
            progress((done + inner * len(names)) / total_steps, f"{label}: run {max(count.values())}")
        done += len(names)
    reports: dict[str, ParityReport] = {}
    if parity:
        for name, backend in backends.items():
            if name != "torch":
                progress(done / total_steps, f"parity of {name} against torch")
                reports[name] = check_parity(model, backend, steps=config.parity_steps or config.new_tokens)
    env["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    results = [
        BackendResult(
            backend=name,
            device=backends[name].device,
            settings=backend_settings(backends[name]),
            prefill=prefill[name],
            decode=decode[name],
            ttft=ttft[name],
            e2e=e2e[name],
            new_tokens=config.new_tokens,
            peak_rss_mb=peaks[name][0] / 2**20,
            gpu_peak_mb=(peaks[name][1] / 2**20) if peaks[name][1] else None,
            weight_bytes=_weight_bytes(backends[name], model),
            tokens=tokens.get(name, []),
        )
        for name in names
    ]
    progress(1.0, "done")
    return BenchResult(model.card.id, env, config, reports, results)


# --- measured speeds for the Store page --------------------------------------------------------

def _speeds_path(store: Store) -> Path:
    return store.home / "bench" / SPEEDS_FILE


def speed_key(backend: str, device: str) -> str:
    return backend if device == "cpu" else f"{backend} ({device})"


def record_speeds(store: Store, result: BenchResult) -> Path:
    """Merge a result's tokens/s into ``<store>/bench/speeds.json`` (atomic write, file lock)."""
    path = _speeds_path(store)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / ".speeds.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = _read_speeds(path)
            entry = data.setdefault(result.model, {})
            for r in result.results:
                entry[speed_key(r.backend, r.device)] = {
                    "tokens_per_s": r.tokens_per_s,
                    "decode_p50_ms": r.decode.p50,
                    "new_tokens": r.new_tokens,
                    "threads": r.settings.get("threads"),
                    "cpu": result.env.get("cpu"),
                    "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
            fd, tmp = tempfile.mkstemp(prefix=".speeds-", dir=path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=2)
            os.replace(tmp, path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return path


def _read_speeds(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, json.JSONDecodeError):
        return {}  # a missing or unreadable file means nothing measured yet


def measured_speeds(store: Store, model_id: str) -> dict[str, float]:
    """Tokens/s measured on this machine per backend (e.g. ``{"torch": 14.6, "onnxruntime": 28.6}``),
    CPU first, in the backends' own order; empty when the model was never benchmarked."""
    from .ort_backend import ALL_BACKENDS

    def order(key: str):
        name, _, device = key.partition(" (")
        return (device, ALL_BACKENDS.index(name) if name in ALL_BACKENDS else len(ALL_BACKENDS), key)

    entry = _read_speeds(_speeds_path(store)).get(store.card(model_id).id, {})
    return {k: float(entry[k]["tokens_per_s"]) for k in sorted(entry, key=order)
            if isinstance(entry[k], dict) and isinstance(entry[k].get("tokens_per_s"), (int, float))}
