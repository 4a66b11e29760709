"""A real LoRA fine-tune with the default settings, summarised: training tokens/s, held-out
perplexity before and after, and the ETA's error against the real time.

Starts a job (``FinetuneConfig`` defaults; ``--max-steps`` etc. override) on the store's base
model and dataset and waits for it, or with ``--job JOB`` only summarises a finished job. The
ETA error at 25/50/75 % of the steps compares the ETA the log showed then with the time training
really took from there. Prints a table for people, then one line of JSON.

    .venv/bin/python benchmarks/finetune_bench.py [--base smollm2-135m-instruct] [--dataset shakespeare] [--max-steps 40]
    .venv/bin/python benchmarks/finetune_bench.py --job JOB_ID
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from workbench.finetune import FinetuneConfig, events, start_job, wait
from workbench.store import Store


def summarise(log: list[dict]) -> dict:
    steps = [e for e in log if e.get("event") == "step"]
    end = next((e["time"] for e in log if e.get("event") == "trained"), steps[-1]["time"])
    tokens_per_step = steps[-1].get("step_tokens") or (  # older logs: worked out from the running average
        steps[-1]["tokens_per_s"] * steps[-1]["elapsed_s"] / max(steps[-1]["step"] - steps[0]["step"] + 1, 1))
    eta = {}
    for share in (0.25, 0.5, 0.75):
        s = steps[max(int(len(steps) * share) - 1, 0)]
        real = end - s["time"]
        eta[f"{int(share * 100)}%"] = {"step": s["step"], "eta_s": s["eta_s"], "real_s": real,
                                       "error_pct": (s["eta_s"] - real) / real * 100 if real > 0 else None}
    finished = next((e for e in log if e.get("event") == "finished"), {})
    data = next((e for e in reversed(log) if e.get("event") == "data"), {})
    base = next((e for e in log if e.get("event") == "baseline"), {})
    evals = [e for e in log if e.get("event") == "eval"]
    return {
        "steps": steps[-1]["step"],
        "train_tokens_per_s": steps[-1]["tokens_per_s"],  # whole run: evaluations and saves included
        "step_tokens_per_s_median": statistics.median(tokens_per_step / e["step_s"] for e in steps),
        "train_seconds": end - steps[0]["time"] + steps[0]["step_s"],
        "eval_loss_first": evals[0]["eval_loss"] if evals else None,
        "eval_loss_last": evals[-1]["eval_loss"] if evals else None,
        "perplexity_before": finished.get("perplexity_before", base.get("perplexity")),
        "perplexity_after": finished.get("perplexity_after"),
        "perplexity_tokens": base.get("tokens"), "window": base.get("window"), "stride": base.get("stride"),
        "eta": eta,
        "threads": data.get("threads"), "load_average_at_start": data.get("load_average"),
        "step_tokens": tokens_per_step, "evaluations": len(evals),
        "job_seconds": log[-1]["time"] - log[0]["time"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="smollm2-135m-instruct")
    parser.add_argument("--dataset", default="shakespeare")
    parser.add_argument("--out", default=f"bench-bard-{int(time.time())}")
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other FinetuneConfig setting, e.g. --set learning_rate=2e-3 --set threads=2")
    parser.add_argument("--job", help="summarise this job instead of starting one")
    args = parser.parse_args()
    store = Store()
    job = args.job
    if job is None:
        extra = {"max_steps": args.max_steps} if args.max_steps else {}
        for item in args.set:
            key, _, value = item.partition("=")
            kind = type(getattr(FinetuneConfig, key))
            extra[key] = (tuple(json.loads(value)) if kind is tuple else value.lower() in ("1", "true", "yes")
                          if kind is bool else kind(value))
        job = start_job(store, FinetuneConfig(args.base, args.dataset, args.out, **extra))
        wait(store, job, poll_s=5.0)
    result = summarise(events(store, job))
    print(f"job {job}: {result['steps']} steps in {result['train_seconds']:.0f} s of training "
          f"({result['job_seconds']:.0f} s with before/after and merging)")
    print(f"threads             {result['threads']} (load average {result['load_average_at_start']} at start, "
          f"{os.getloadavg()[0]:.2f} now)")
    print(f"training tokens/s   {result['train_tokens_per_s']:.1f} (whole run)  "
          f"{result['step_tokens_per_s_median']:.1f} (median step)")
    print(f"eval loss           {result['eval_loss_first']:.4f} -> {result['eval_loss_last']:.4f}")
    if result["perplexity_after"] is not None:
        print(f"perplexity          {result['perplexity_before']:.2f} -> {result['perplexity_after']:.2f} "
              f"({result['perplexity_tokens']} held-out tokens, window {result['window']}, stride {result['stride']})")
    for share, e in result["eta"].items():
        print(f"ETA at {share:>3} (step {e['step']:>3}): shown {e['eta_s']:.0f} s, real {e['real_s']:.0f} s, "
              f"error {e['error_pct']:+.1f} %")
    print(json.dumps({"job": job, **result}))


if __name__ == "__main__":
    main()
