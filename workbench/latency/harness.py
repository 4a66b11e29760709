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

Results are numbers (``latency.results``); formatting happens in pages, the CLI and
``workbench.views.latency``.
"""
from __future__ import annotations

import os
import random
import time

import numpy as np
import torch

from ..common import PeakRSS, Progress, quiet
from ..errors import InvalidInputError, WorkbenchError
from ..runtime.backends import backend_settings
from ..runtime.backends.isolated import BackendCrashedError, make_any_backend
from ..runtime.generation import greedy
from .environment import environment, memory_read_bandwidth
from .parity import ParityReport, check_parity
from .results import BackendResult, BenchConfig, BenchResult
from .stats import Latency

BENCH_TEXT = (
    "The history of computing is a story of people trying to make machines do arithmetic faster. "
    "Early mechanical calculators gave way to relays, then vacuum tubes, then transistors, and each "
    "step made memory cheaper and larger. Today a small language model can run on a laptop, and the "
    "time it takes to produce one word depends mostly on how fast the weights can be read from memory. "
)

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


class _MemorySampler(PeakRSS):
    """Peak RSS (and GPU memory in use) of this process, sampled on a thread every 10 ms;
    ``enabled=False`` samples nothing (peaks stay 0)."""

    def __init__(self, gpu: bool, enabled: bool = True):
        super().__init__(interval=0.01)
        self.gpu, self.enabled = gpu and torch.cuda.is_available(), enabled
        self.peak_gpu = 0

    @property
    def peak_rss(self) -> int:
        return self.peak

    def sample(self) -> None:
        super().sample()
        if self.gpu:
            free, total = torch.cuda.mem_get_info()
            self.peak_gpu = max(self.peak_gpu, total - free)

    def __enter__(self):
        if self.enabled:
            super().__enter__()
            self.sample()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            super().__exit__(*exc)


def prefill_once(backend, ids: torch.Tensor) -> float:
    clock = _Clock(backend)
    mark = clock.start()
    backend.prefill(ids)
    return clock.ms_since(mark)


def generate_once(backend, ids: torch.Tensor, new_tokens: int):
    """Greedy ``new_tokens`` tokens; returns (ttft ms, [per-step ms], e2e ms, tokens)."""
    clock = _Clock(backend)
    mark = step_mark = clock.start()
    tokens, steps = [], []
    for token, _ in greedy(backend, ids, new_tokens):  # the clock runs while the generator steps
        steps.append(clock.ms_since(step_mark))
        tokens.append(token)
        step_mark = clock.start()
    return steps[0], steps[1:], clock.ms_since(mark), tokens


def _weight_bytes(backend, model) -> int:
    """Bytes of weights one decode step reads on ``backend``."""
    per_token = getattr(backend, "weight_bytes_per_token", None)
    if per_token is not None:
        return int(per_token())
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
    progress: Progress = quiet,
    parity: bool = True,
    dataset=None,
    failures: dict[str, dict] | None = None,
) -> BenchResult:
    """Benchmark ready ``backends`` (name -> ``Backend``) on a loaded ``model``.

    With ``parity`` every backend other than ``torch`` is also checked against torch eager
    (``parity.check_parity`` over ``config.parity_steps`` greedy tokens). With a ``dataset``
    (``workbench.data.Dataset``) each backend's held-out perplexity and mean KL divergence
    against torch fp32 are measured too (``config.quality_tokens`` tokens). The memory read
    ceiling is measured in the same run, with the same thread count (``env["memory_read"]``).

    A backend whose process dies (``BackendCrashedError``: a native backend run in a child
    process, see ``runtime.backends.isolated``) is recorded in ``result.failures`` (name ->
    phase, signal, exit status, message) and left out of the later rounds; the others go on, and
    its timings are dropped unless it failed after them (parity, perplexity). ``failures``
    carries backends that already failed before the run (e.g. while loading) into the result.
    """
    config = config.validate(model.context_length)
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    env = environment()
    progress(0.0, "measuring the memory read bandwidth")
    env["memory_read"] = memory_read_bandwidth(config.threads)
    failed: dict[str, dict] = dict(failures or {})
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
        # memory is sampled on the untimed warm-up runs (the same work): a sampling thread beside
        # timed decoding takes CPU from it on a small machine
        backend = backends[name]
        with _MemorySampler(backend.device.startswith("cuda"), enabled=not record or config.warmup == 0) as mem:
            if task == "prefill":
                ms = prefill_once(backend, prompts[length])
                if record:
                    prefill[name][length].add(ms)
                spent = ms
            else:
                first, steps, total, toks = generate_once(backend, decode_ids, config.new_tokens)
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

    def attempt(name, phase, work, *args):
        """``work(*args)``, or None when the backend's process died (recorded; it takes no more turns)."""
        try:
            return work(*args)
        except BackendCrashedError as err:
            failed[name] = {**err.to_json(), "during": phase}
            progress(done / total_steps, f"{name} failed: {err.signal or err.returncode} during {phase}")
            return None

    def alive():
        return [b for b in names if b not in failed]

    for name in names:
        progress(done / total_steps, f"warming up {name}")
        for task, length in tasks:
            for _ in range(config.warmup):
                if name in failed or attempt(name, "warm-up", run, name, task, length, False) is None:
                    break
        done += 1
    for task, length in tasks:
        count = {b: 0 for b in names}
        spent = {b: 0.0 for b in names}
        label = f"prefill {length} tokens" if task == "prefill" else f"decoding {config.new_tokens} tokens"
        while True:
            due = [b for b in alive() if count[b] < config.max_repeats
                   and (count[b] < config.min_repeats or spent[b] < config.min_time_s * 1000)]
            if not due:
                break
            for name in due:  # one round: every backend that still needs runs takes a turn
                ms = attempt(name, label, run, name, task, length, True)
                spent[name] += ms or 0.0
                count[name] += 1
            inner = min(1.0, min((count[b] / config.min_repeats for b in alive()), default=1.0))
            progress((done + inner * len(names)) / total_steps, f"{label}: run {max(count.values())}")
        done += len(names)
    timed = alive()  # the backends whose timings stand
    reports: dict[str, ParityReport] = {}
    if parity:
        for name in timed:
            if name != "torch":
                progress(done / total_steps, f"parity of {name} against torch")
                report = attempt(name, "parity", lambda b: check_parity(
                    model, b, steps=config.parity_steps or config.new_tokens), backends[name])
                if report is not None:
                    reports[name] = report
    quality = {}
    if dataset is not None:
        from ..quality.evaluation import perplexity

        for name in alive():
            progress(done / total_steps, f"held-out perplexity on {name}")
            measured = attempt(name, "perplexity", lambda b: perplexity(
                model, dataset, b, window=config.quality_window,
                stride=config.quality_window // 2, max_tokens=config.quality_tokens), backends[name])
            if measured is not None:
                quality[name] = measured
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
        for name in timed
    ]
    progress(1.0, "done")
    return BenchResult(model.card.id, env, config, reports, results, quality, failed)


def make_backends(model, names, store, threads: int | None = None, progress: Progress = quiet,
                  device: str | None = None) -> tuple[dict, dict]:
    """Each backend made, or its failure recorded (``{name: failure}``): one that cannot be made
    or whose process dies while loading does not stop the run."""
    ready, failures = {}, {}
    for name in names:
        try:
            ready[name] = make_any_backend(model, name, progress=progress, device=device, threads=threads, store=store)
        except BackendCrashedError as err:
            failures[name] = {**err.to_json(), "during": "loading"}
        except WorkbenchError as err:
            if name == "torch":
                raise
            failures[name] = {"backend": name, "phase": "loading", "during": "loading", "signal": None,
                              "returncode": None, "error": str(err)}
    return ready, failures
