"""``workbench export`` and ``workbench bench``: the ONNX Runtime lab on the command line.

``workbench export ID [--variant fp32|fused|int8|q4|q4a8]`` prints the folder of the (cached) export.
``workbench bench ID --backends torch,onnxruntime[,onnxruntime-fused,onnxruntime-int8,onnxruntime-q4,
onnxruntime-q4a8,llamacpp] [--device cpu|cuda] [--dataset D]
[--prompt-lengths 16,128,512] [--new-tokens 64] [--json FILE]`` prints a table and writes the
JSON of ``workbench.latency.results.BenchResult.to_json()`` (``-`` for stdout).
"""
from __future__ import annotations

import sys

from ..errors import InvalidInputError
from ..onnx.spec import VARIANTS
from ..runtime.backends import ALL_BACKENDS
from ..store import Store
from .terminal import TerminalProgress, write_json


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InvalidInputError(f"'{text}' is not a comma-separated list of whole numbers, e.g. 16,128,512.") from None
    if not values:
        raise InvalidInputError("Give at least one prompt length.")
    return values


def _backends(text: str) -> list[str]:
    from ..runtime.backends.isolated import is_native

    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [n for n in names if n not in ALL_BACKENDS and not is_native(n)]
    if unknown or not names:
        raise InvalidInputError(f"Unknown backends {unknown or text!r}: choose from {', '.join(ALL_BACKENDS)}.")
    return list(dict.fromkeys(names))


def cmd_export(args) -> int:
    from ..onnx import export_model

    export = export_model(Store(), args.id, args.variant, progress=TerminalProgress(), force=args.force,
                          threads=args.threads)
    print(export.directory)
    return 0


def format_table(result) -> str:
    """The people-readable table of a ``BenchResult`` (the numbers live in the result)."""
    lines = [f"Machine: {result.machine}",
             f"{result.model}: {result.env['cpu']}, {result.env['cores']} cores, load {result.env['load_average']}"]
    if "memory_read" in result.env:
        m = result.env["memory_read"]
        lines.append(f"memory read ceiling measured in this run: {m['gb_s']:.1f} GB/s with {m['threads']} threads")
    lengths = list(result.config.prompt_lengths)
    width = max([len("backend")] + [len(r.backend) for r in result.results])
    head = f"{'backend':<{width}} {'device':<6} " + " ".join(f"{'prefill ' + str(n):>12}" for n in lengths)
    gpu = any(r.gpu_peak_mb for r in result.results)
    head += f" {'decode p50':>11} {'p90':>7} {'ttft':>8} {'tok/s':>7} {'speedup':>8} {'MB/tok':>7} {'% bw':>5} {'RSS MB':>7}"
    head += f" {'GPU MB':>7}  parity" if gpu else "  parity"
    lines.append(head)
    summary = result.summary().set_index("backend")
    for r in result.results:
        s = summary.loc[r.backend]
        cells = " ".join(f"{r.prefill[n].p50:>9.1f} ms" for n in lengths)
        lines.append(
            f"{r.backend:<{width}} {r.device:<6} {cells} {r.decode.p50:>8.2f} ms {r.decode.p90:>7.2f} "
            f"{r.ttft.p50:>8.1f} {r.tokens_per_s:>7.1f} {s['speedup']:>7.2f}x {s['weight_mb_per_token']:>7.1f} "
            f"{100 * s['bandwidth_share']:>4.0f}% {r.peak_rss_mb:>7.0f}"
            + (f" {r.gpu_peak_mb or 0:>7.0f}" if gpu else "") + f"  {s['parity']} {s['greedy_match']}"
            + (f"  ppl {s['perplexity']:.3f} KLD {s['kld_mean']:.2e}" if r.backend in result.quality else "")
        )
    for name, p in result.parity.items():
        lines.append(f"  {name}: {p.verdict}")
    for name, f in result.failures.items():  # a backend that could not be made, or whose process died
        how = f"died with {f['signal']}" if f.get("signal") else "failed"
        lines.append(f"FAILED {name}: {how} during {f.get('during')}: {f.get('error')}")
    return "\n".join(lines)


BACKEND_FAILED = 3  # the exit status when a backend failed (the others' results are printed)


def cmd_bench(args) -> int:
    from ..latency.harness import run_benchmark
    from ..latency.results import BenchConfig
    from ..latency.speeds import record_speeds
    from ..latency.harness import make_backends
    from ..runtime.devices import set_threads
    from ..runtime.loading import load_model

    store = Store()
    names = _backends(args.backends)
    lengths = _ints(args.prompt_lengths)
    threads = set_threads(args.threads)
    model = load_model(args.id, store=store, device=args.device, threads=threads)
    progress = TerminalProgress()
    backends, failures = make_backends(model, names, store, threads, progress, device=model.device)
    for backend in backends.values():
        if getattr(backend, "note", ""):
            print(f"note: {backend.note}", file=sys.stderr)
    config = BenchConfig(
        prompt_lengths=lengths, new_tokens=args.new_tokens, decode_prompt_length=args.decode_context or min(128, max(lengths)),
        min_repeats=args.repeats, min_time_s=args.min_time, warmup=args.warmup, device=model.device, threads=threads,
        quality_tokens=args.ppl_tokens,
    )
    dataset = None
    if args.dataset:
        from ..data.loading import load_dataset

        dataset = load_dataset(store, args.dataset, progress=progress)
    result = run_benchmark(model, backends, config, progress=progress, dataset=dataset, failures=failures)
    record_speeds(store, result)
    print(format_table(result))
    write_json(args.json, result.to_json())
    return BACKEND_FAILED if result.failures else 0


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a store model to ONNX (KV cache); prints its folder")
    p.add_argument("id")
    p.add_argument("--variant", choices=VARIANTS, default="fp32")
    p.add_argument("--force", action="store_true", help="export again even if a good export is cached")
    p.add_argument("--threads", type=int)
    p.set_defaults(func=cmd_export)

    p = subparsers.add_parser("bench", help="time torch and ONNX Runtime on a store model")
    p.add_argument("id")
    p.add_argument("--backends", default="torch,onnxruntime", help=f"comma-separated: {', '.join(ALL_BACKENDS)}")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--prompt-lengths", default="16,128,512")
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--decode-context", type=int, help="prompt length of the decode runs (default min(128, longest))")
    p.add_argument("--repeats", type=int, default=3, help="minimum timed runs per measurement")
    p.add_argument("--min-time", type=float, default=2.0, help="minimum seconds per measurement")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, help="CPU threads for torch and ONNX Runtime (default: all cores)")
    p.add_argument("--dataset", help="also measure held-out perplexity and KL divergence against torch fp32 "
                                     "on this store dataset (or file) for every backend")
    p.add_argument("--ppl-tokens", type=int, default=1024, help="held-out tokens scored with --dataset")
    p.add_argument("--json", help="write the results as JSON to FILE ('-' for stdout)")
    p.set_defaults(func=cmd_bench)
