"""ONNX Runtime's own profile of decode steps: kernel time per op type, per step, for each variant.

Runs ``--steps`` decode steps (one token after ``--context`` cached positions, random cache) of a
store model's cached exports with profiling on, and prints the median profiled step and the
kernel milliseconds per step of the op types that cost most. Profiling slows every node, so the
whole step reads slower than in ``workbench bench``; the kernel times of large ops (``MatMul``,
``MatMulNBits``) are what it is for.

    .venv/bin/python benchmarks/ort_profile.py [--model smollm2-135m-instruct] [--variants q4a8,q4,fused]
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile

import numpy as np
import onnxruntime as ort

from workbench.onnx import cached_export
from workbench.store import Store


def profile(export, context: int, steps: int, threads: int, folder: str) -> tuple[float, collections.Counter]:
    """(median profiled step in ms, kernel µs summed over ``steps`` by op type)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.force_spinning_stop", "1")
    session = ort.InferenceSession(str(export.onnx_path), opts, providers=["CPUExecutionProvider"])
    feeds = {"input_ids": np.ones((1, 1), np.int64), "attention_mask": np.ones((1, context + 1), np.int64),
             "position_ids": np.full((1, 1), context, np.int64)}
    for name in export.input_names[3:]:
        feeds[name] = np.random.default_rng(0).random((1, export.kv_heads, context, export.head_dim), np.float32)
    for _ in range(5):  # warm-up, not profiled
        session.run(["logits"], feeds)
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(folder, export.variant)
    session = ort.InferenceSession(str(export.onnx_path), opts, providers=["CPUExecutionProvider"])
    for _ in range(steps + 2):
        session.run(["logits"], feeds)
    with open(session.end_profiling()) as f:
        events = json.load(f)
    by_op, runs = collections.Counter(), []
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[e["args"]["op_name"]] += e["dur"]
        elif e.get("cat") == "Session" and e["name"] == "model_run":
            runs.append(e["dur"])
    total = steps + 2  # kernel times cover every profiled run
    return float(np.median(runs[-steps:])) / 1000, collections.Counter({k: v * steps / total for k, v in by_op.items()})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--variants", default="q4a8,q4,fused")
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--top", type=int, default=8)
    args = ap.parse_args()
    store = Store()
    print(f"{args.model}: {args.steps} decode steps at context {args.context}, {args.threads} threads, "
          f"onnxruntime {ort.__version__}, load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as folder:
        for variant in args.variants.split(","):
            export = cached_export(store, args.model, variant, verify=False)
            if export is None:
                print(f"{variant}: no cached export; make it with `workbench export {args.model} --variant {variant}`")
                continue
            step, by_op = profile(export, args.context, args.steps, args.threads, folder)
            print(f"{variant}: profiled step {step:.2f} ms; kernel ms per step by op type:")
            for op, us in by_op.most_common(args.top):
                print(f"   {op:<34} {us / args.steps / 1000:6.2f}")
            print(f"   {'(all kernels)':<34} {sum(by_op.values()) / args.steps / 1000:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
