"""Quantized variants against torch fp32 and llama.cpp, in one run, on one store model.

    .venv/bin/python benchmarks/quantized.py [--model smollm2-135m-instruct] [--dataset shakespeare]
        [--backends torch,onnxruntime-fused,onnxruntime-q4,onnxruntime-q4a8,onnxruntime-gqa,...]

Every backend is timed by ``workbench.latency.harness`` (the backends take turns, round by round),
with the memory read ceiling measured in the same run and thread count, parity against torch
(max |Δlogits| against the measured fp32 noise floor, greedy tokens equal) and held-out
perplexity plus mean KL divergence against torch fp32 on ``--dataset``. ``llamacpp`` runs the
same GGUF file with the same threads (skipped, and said so, when llama-cpp-python is missing);
``onnxruntime-genai`` runs onnxruntime-genai's builder graph (int4, re-quantized by its builder:
not the GGUF's blocks) in its own loop, and ``onnxruntime-genai-fp32`` its builder's fp32 graph
(the one ``onnxruntime-gqa`` is made from) in the same loop (both skipped, and said so, when
onnxruntime-genai is missing). All three run in a child process of their own, like every native
backend (``runtime.backends.isolated``): when one crashes (llama.cpp built natively segfaulted on
an AMX CPU), its failure and signal are printed after the table and in the JSON, and every other
backend's results are printed as usual.

Exit status: 0 when every backend ran; 3 when a backend failed (while loading or timed: its
process died, or it could not be made), after printing everything the others measured.

Then the targets of the quantized variants, each a ratio from this run:

- q4: decode p50 at a 128-token context below llama.cpp's; 64/64 greedy tokens equal to torch;
  perplexity within 0.1 % of torch fp32.
- q4a8: decode at least 1.3x faster than llama.cpp.
- prefill of 128 tokens at least 2x faster than llama.cpp's (q4 and q4a8).

And those of ONNX Runtime's own decode graph (issue 23), on the ``gqa`` backends:

- ``onnxruntime-gqa-q4`` (exact: 64/64 greedy tokens, logits within the fp32 bar) decodes faster
  than llama.cpp; ``onnxruntime-gqa-q4a8`` at least 1.3x llama.cpp; their prefill of 128 tokens
  at least 2x llama.cpp's;
- our loop at least 0.95x onnxruntime-genai's on the same graph: decode p50 (at the
  ``--decode-context`` context, 128 tokens by default) of ``onnxruntime-gqa`` (our loop,
  ``OrtBackend``) against ``onnxruntime-genai-fp32`` (its loop, ``og.Generator``). Both run the
  builder's fp32 graph: genai's as the builder wrote it, ours rewritten to the workbench
  interface (position ids, rotary before GQA, an additive padding bias, a last-position slice),
  which adds those few nodes. ``onnxruntime-genai-fp32`` is also held to the fp32 bars (logits,
  greedy tokens), so the two compute the same thing;
- fp32 decode (``onnxruntime-gqa``) reading its weights at 85 % or more of the memory read
  ceiling measured in the run.

A target whose reference backend did not run (llama.cpp or onnxruntime-genai not installed, or
failed) is reported as not met, with why.

Informational, not a target: ``onnxruntime-gqa-q4a8`` (the builder's graph shape, the same int4 x
int8 ``MatMulNBits`` kernels, the GGUF's blocks) against ``onnxruntime-genai`` (its builder's
int4 graph, its loop): different weights (the GGUF's LM head is Q8_0 where the builder's is
int4, Q4_1's offsets add small corrections), so not a loop-against-loop measure. Printed as
``INFO`` lines after the targets.

The last line is JSON: the result (``BenchResult.to_json()`` without raw samples, with
``failures`` and ``machine``) plus ``targets`` and ``informational`` (rows of the same shape,
``met`` None). A target against a backend that failed is reported as not met, with the failure
as its value.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from workbench.cli.onnx import (  # 3: a backend failed, the rest was printed
    BACKEND_FAILED,
    format_table,
)
from workbench.data.loading import load_dataset
from workbench.latency.harness import make_backends, run_benchmark
from workbench.latency.results import BenchConfig
from workbench.latency.speeds import record_speeds
from workbench.runtime.backends import (
    GENAI_BACKENDS,
    LLAMACPP,
    ORT_GENAI,
    ORT_GENAI_FP32,
    ORT_GQA,
    ORT_GQA_Q4,
    ORT_GQA_Q4A8,
    genai_installed,
    llamacpp_installed,
)
from workbench.runtime.backends.genai import INSTALL_HINT as GENAI_HINT
from workbench.runtime.backends.hints import INSTALL_HINT
from workbench.runtime.devices import set_threads
from workbench.runtime.loading import load_model
from workbench.store import Store

DEFAULT = ("torch,onnxruntime-fused,onnxruntime-q4,onnxruntime-q4a8,onnxruntime-gqa,onnxruntime-gqa-q4,"
           "onnxruntime-gqa-q4a8,onnxruntime-genai,onnxruntime-genai-fp32,llamacpp")
GQA, GQA_Q4, GQA_Q4A8 = ORT_GQA, ORT_GQA_Q4, ORT_GQA_Q4A8
CEILING_GOAL = 0.85  # fp32 decode: share of the measured read ceiling
LOOP_GOAL = 0.95  # our loop against onnxruntime-genai's, same builder fp32 graph
SAME_GRAPH = ("same builder fp32 graph: genai's as the builder wrote it, ours rewritten to the workbench interface "
              "(position ids, rotary before GQA, padding bias, last-position slice)")
DIFFERENT_WEIGHTS = ("different weights, not a loop measure: the GGUF's int4 blocks with a Q8_0 LM head against "
                     "the builder's own int4 re-quantization")


def _row(name: str, value, goal: str, met: bool) -> dict:
    return {"name": name, "value": value, "goal": goal, "met": bool(met)}


def _exactness(result, name: str, with_ppl: bool) -> list[dict]:
    """A backend that must be exact: every greedy token, logits within the fp32 bar (and the
    perplexity within 0.1 % of torch's when ``with_ppl`` and measured)."""
    p = result.parity[name]
    out = [_row(f"{name} greedy tokens equal to torch", f"{p.greedy_match}/{p.greedy_total}", "all",
                p.greedy_match == p.greedy_total),
           _row(f"{name} max |Δlogits| within the fp32 bar", p.max_abs_diff, f"≤ {p.tolerance:.2e}",
                p.max_abs_diff <= p.tolerance)]
    if with_ppl and "torch" in result.quality and name in result.quality:
        rel = result.quality[name].perplexity / result.quality["torch"].perplexity - 1
        out.append(_row(f"{name} perplexity vs torch fp32", f"{rel:+.4%}", "within ±0.1%", abs(rel) <= 0.001))
    return out


def _against_llamacpp(result, have: dict, names: tuple[str, str], why_missing: str | None) -> list[dict]:
    """Decode and prefill-128 ratios of (q4, q4a8)-like backends against llama.cpp's."""
    llama = have.get(LLAMACPP)
    q4, q4a8 = names
    wanted = [(f"{q4} decode speed / llama.cpp's", "> 1"), (f"{q4a8} decode speed / llama.cpp's", "≥ 1.3"),
              (f"{q4} prefill 128 speed / llama.cpp's", "≥ 2"), (f"{q4a8} prefill 128 speed / llama.cpp's", "≥ 2")]
    if llama is None:
        return [_row(n, f"not measured: {why_missing}", g, False) for n, g in wanted if n.split()[0] in have]
    out = []
    ctx = result.config.decode_prompt_length
    for name, goal in ((q4, 1.0), (q4a8, 1.3)):
        if name in have:
            ratio = llama.decode.p50 / have[name].decode.p50
            out.append(_row(f"{name} decode speed / llama.cpp's (context {ctx})", round(ratio, 3),
                            "> 1" if goal == 1.0 else f"≥ {goal}", ratio > goal if goal == 1.0 else ratio >= goal))
    n = 128 if 128 in llama.prefill else max(llama.prefill)
    for name in (q4, q4a8):
        r = have.get(name)
        if r is not None and n in r.prefill:
            ratio = llama.prefill[n].p50 / r.prefill[n].p50
            out.append(_row(f"{name} prefill {n} speed / llama.cpp's", round(ratio, 3), "≥ 2", ratio >= 2))
    return out


def _why_not(result, name: str) -> str:
    failure = result.failures.get(name)
    return f"failed: {failure.get('signal') or failure.get('error')}" if failure else f"{name} was not run"


def _loop_ratio(result, have: dict, ours: str, theirs: str, label: str) -> tuple[str, float | str]:
    """The name and value of our loop's decode speed over onnxruntime-genai's (decode p50 at the
    run's decode context): a ratio, or why it was not measured."""
    name = (f"our loop ({ours}) / onnxruntime-genai's loop ({theirs}) decode speed "
            f"(context {result.config.decode_prompt_length}), {label}")
    if theirs not in have:
        return name, f"not measured: {_why_not(result, theirs)}"
    return name, have[theirs].decode.p50 / have[ours].decode.p50


def informational(result) -> list[dict]:
    """Ratios printed beside the targets but not judged (``met`` None): the int4 pair, whose
    weights differ (see the module docstring)."""
    have = {r.backend: r for r in result.results}
    out = []
    if GQA_Q4A8 in have:
        name, value = _loop_ratio(result, have, GQA_Q4A8, ORT_GENAI, DIFFERENT_WEIGHTS)
        out.append({"name": name, "value": value if isinstance(value, str) else round(value, 3),
                    "goal": "none (informational)", "met": None})
    for row in out:
        print(f"INFO {row['name']}: {row['value']}")
    return out


def targets(result) -> list[dict]:
    """Each target as {name, value, goal, met} from this run's numbers (see the module docstring)."""
    have = {r.backend: r for r in result.results}
    why = (f"failed: {result.failures[LLAMACPP].get('signal') or result.failures[LLAMACPP].get('error')}"
           if LLAMACPP in result.failures else "llamacpp was not run (llama-cpp-python is not installed here)")
    out = []
    if "onnxruntime-q4" in have:
        out += _exactness(result, "onnxruntime-q4", with_ppl=True)
    out += _against_llamacpp(result, have, ("onnxruntime-q4", "onnxruntime-q4a8"), why)
    if GQA in have:
        out += _exactness(result, GQA, with_ppl=False)
        ceiling = result.bandwidth_gb_s
        share = have[GQA].weights_gb_per_s / ceiling
        out.append(_row(f"{GQA} (fp32) decode weight reads / read ceiling ({ceiling:.1f} GB/s)", round(share, 3),
                        f"≥ {CEILING_GOAL}", share >= CEILING_GOAL))
    if GQA_Q4 in have:
        out += _exactness(result, GQA_Q4, with_ppl=True)
    out += _against_llamacpp(result, have, (GQA_Q4, GQA_Q4A8), why)
    if ORT_GENAI_FP32 in have:  # the comparison's graph computes what torch computes, as ours does
        out += _exactness(result, ORT_GENAI_FP32, with_ppl=False)
    if GQA in have:
        name, value = _loop_ratio(result, have, GQA, ORT_GENAI_FP32, SAME_GRAPH)
        if isinstance(value, str):
            out.append(_row(name, value, f"≥ {LOOP_GOAL}", False))
        else:
            out.append(_row(name, round(value, 3), f"≥ {LOOP_GOAL}", value >= LOOP_GOAL))
    for name, failure in result.failures.items():
        out.append(_row(f"{name} ran", f"failed: {failure.get('signal') or failure.get('error')}",
                        "targets against it measured", False))
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
    for name in GENAI_BACKENDS:
        if name in names and not genai_installed():
            print(f"{name} skipped: onnxruntime-genai is not installed. Add it with {GENAI_HINT}.", file=sys.stderr)
            names.remove(name)

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
    info = informational(result)
    data = result.to_json()
    for r in data["results"]:
        r.pop("raw_ms", None)
    data["summary"] = result.summary().to_dict(orient="records")
    data["targets"] = met
    data["informational"] = info
    print(json.dumps(data, default=str))
    return BACKEND_FAILED if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
