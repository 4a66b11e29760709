"""Quantized variants against torch fp32 and llama.cpp, in one run, on one store model.

    .venv/bin/python benchmarks/quantized.py [--model smollm2-135m-instruct] [--dataset shakespeare]
        [--backends torch,onnxruntime-fused,onnxruntime-int8,onnxruntime-q4,onnxruntime-q4a8,llamacpp]

Every backend is timed by ``workbench.latency.harness`` (the backends take turns, round by round),
with the memory read ceiling measured in the same run and thread count, parity against torch
(max |Δlogits| against the measured fp32 noise floor, greedy tokens equal) and held-out
perplexity plus mean KL divergence against torch fp32 on ``--dataset``. ``llamacpp`` runs the
same GGUF file with the same threads (skipped, and said so, when llama-cpp-python is missing),
in a child process of its own, like every native backend (``runtime.backends.isolated``): when
one crashes (llama.cpp built natively segfaulted on an AMX CPU), its failure and signal are
printed after the table and in the JSON, and every other backend's results are printed as usual.

Exit status: 0 when every backend ran; 3 when a backend failed (while loading or timed: its
process died, or it could not be made), after printing everything the others measured.

Then the targets of the quantized variants, each a ratio from this run:

- q4: decode p50 at a 128-token context below llama.cpp's; 64/64 greedy tokens equal to torch;
  perplexity within 0.1 % of torch fp32.
- q4a8: decode at least 1.3x faster than llama.cpp.
- prefill of 128 tokens at least 2x faster than llama.cpp's (q4 and q4a8).

The last line is JSON: the result (``BenchResult.to_json()`` without raw samples, with
``failures`` and ``machine``) plus ``targets``. A target against a backend that failed is
reported as not met, with the failure as its value.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from workbench.cli.onnx import BACKEND_FAILED, format_table  # 3: a backend failed, the rest was printed
from workbench.data.loading import load_dataset
from workbench.latency.harness import make_backends, run_benchmark
from workbench.latency.results import BenchConfig
from workbench.latency.speeds import record_speeds
from workbench.runtime.backends import LLAMACPP, llamacpp_installed
from workbench.runtime.backends.hints import INSTALL_HINT
from workbench.runtime.devices import set_threads
from workbench.runtime.loading import load_model
from workbench.store import Store

DEFAULT = "torch,onnxruntime-fused,onnxruntime-int8,onnxruntime-q4,onnxruntime-q4a8,llamacpp"


def targets(result) -> list[dict]:
    """Each target as {name, value, goal, met} from this run's numbers."""
    have = {r.backend: r for r in result.results}
    out = []
    llama = have.get(LLAMACPP)
    q4, q4a8 = have.get("onnxruntime-q4"), have.get("onnxruntime-q4a8")
    if q4 is not None:
        p = result.parity["onnxruntime-q4"]
        out.append({"name": "q4 greedy tokens equal to torch", "value": f"{p.greedy_match}/{p.greedy_total}",
                    "goal": "all", "met": p.greedy_match == p.greedy_total})
        out.append({"name": "q4 max |Δlogits| within the fp32 bar", "value": p.max_abs_diff,
                    "goal": f"≤ {p.tolerance:.2e}", "met": p.max_abs_diff <= p.tolerance})
        if "torch" in result.quality and "onnxruntime-q4" in result.quality:
            rel = result.quality["onnxruntime-q4"].perplexity / result.quality["torch"].perplexity - 1
            out.append({"name": "q4 perplexity vs torch fp32", "value": f"{rel:+.4%}", "goal": "within ±0.1%",
                        "met": abs(rel) <= 0.001})
    if llama is not None:
        ctx = result.config.decode_prompt_length
        for name, goal in (("onnxruntime-q4", 1.0), ("onnxruntime-q4a8", 1.3)):
            if name in have:
                ratio = llama.decode.p50 / have[name].decode.p50
                out.append({"name": f"{name} decode speed / llama.cpp's (context {ctx})", "value": round(ratio, 3),
                            "goal": f"> {goal}" if goal == 1.0 else f"≥ {goal}",
                            "met": ratio > goal if goal == 1.0 else ratio >= goal})
        n = 128 if 128 in llama.prefill else max(llama.prefill)
        for r in (q4, q4a8):
            if r is not None and n in r.prefill:
                ratio = llama.prefill[n].p50 / r.prefill[n].p50
                out.append({"name": f"{r.backend} prefill {n} speed / llama.cpp's", "value": round(ratio, 3),
                            "goal": "≥ 2", "met": ratio >= 2})
    for name, failure in result.failures.items():
        if name == LLAMACPP or name in ("onnxruntime-q4", "onnxruntime-q4a8"):
            out.append({"name": f"{name} ran", "value": f"failed: {failure.get('signal') or failure.get('error')}",
                        "goal": "targets against it measured", "met": False})
    for row in out:
        print(f"{'MET ' if row['met'] else 'MISS'} {row['name']}: {row['value']} (goal {row['goal']})")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--dataset", default="shakespeare", help="store dataset for perplexity / KL ('' to skip)")
    parser.add_argument("--backends", default=DEFAULT)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompt-lengths", default="16,128,512")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=2.0)
    parser.add_argument("--ppl-tokens", type=int, default=1024)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--decode-context", type=int, default=128, help="prompt tokens before the timed decode")
    args = parser.parse_args(argv)
    threads = set_threads(args.threads or len(os.sched_getaffinity(0)))
    store = Store()
    model = load_model(args.model, store=store, device="cpu", threads=threads)
    names = list(dict.fromkeys(["torch"] + args.backends.split(",")))
    if LLAMACPP in names and not llamacpp_installed():
        print(f"llamacpp skipped: llama-cpp-python is not installed. Add it with {INSTALL_HINT}.", file=sys.stderr)
        names.remove(LLAMACPP)

    def say(f, m):
        print(f"\r{f:4.0%} {m[:70]:<70}", end="", file=sys.stderr)

    backends, failures = make_backends(model, names, store, threads, say)
    dataset = load_dataset(store, args.dataset, progress=say) if args.dataset else None
    config = BenchConfig(prompt_lengths=tuple(int(x) for x in args.prompt_lengths.split(",")),
                         new_tokens=args.new_tokens, decode_prompt_length=args.decode_context,
                         min_repeats=args.repeats, min_time_s=args.min_time, threads=threads,
                         quality_tokens=args.ppl_tokens)
    result = run_benchmark(model, backends, config, progress=say, dataset=dataset, failures=failures)
    print(file=sys.stderr)
    record_speeds(store, result)
    print(format_table(result))
    met = targets(result)
    data = result.to_json()
    for r in data["results"]:
        r.pop("raw_ms", None)
    data["summary"] = result.summary().to_dict(orient="records")
    data["targets"] = met
    print(json.dumps(data, default=str))
    return BACKEND_FAILED if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
