"""Throughput of the HTTP server with continuous batching, on the real default model.

Starts the server in this process on a free 127.0.0.1 port (a temporary API key, revoked at the
end), then for 1, 2, 4 and 8 concurrent clients each client sends ``--requests`` streamed greedy
completions (``/v1/completions``, ``max_tokens`` new tokens, end-of-sequence ignored so every
request does the same work). Per phase: aggregate generated tokens/s over the phase's wall time,
time to first token and per-token latency (gaps between a stream's tokens) p50/p99, seen by the
clients, and whether every output equals the same prompt's solo output. Then, in-process: how far
batching moves the logits (max |Δ| over every step of 8 prompts decoded together vs alone) and
whether seeded sampled requests give the solo text at concurrency 4. Last, what bounds the speedup:
one ``engine.step`` for 1, 4 and 8 rows at the same context, same threads, same run (on torch also
one decode forward pass of the bare module, ``DynamicCache`` and no mask): if 4 rows cost r times 1
row, 4 clients can reach at most 4 / r times one client's tokens/s.

``--backend`` picks the engine: ``torch`` (default) or an ONNX Runtime variant
(``onnxruntime-fused`` …), whose rows share each forward pass the same way.

Uses the store at $WORKBENCH_HOME (default ~/.cache/gpt-store-workbench). Prints a table, then one
JSON line. Bounded: ``--requests`` per client and ``--time-limit`` seconds in all.

    .venv/bin/python benchmarks/serve_bench.py [--backend torch] [--concurrency 1,2,4,8] [--requests 2] [--max-tokens 32]
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import sys
import time

import numpy as np
import requests
import torch
from transformers import DynamicCache

from workbench.runtime.sampling import argmax
from workbench.serve.engine import make_engine
from workbench.serve.keys import KeyStore
from workbench.serve.server import ServerThread, build_app
from workbench.store import Store

MODEL = "smollm2-135m-instruct"
PROMPTS = [
    "The capital of France is", "Once upon a time, in a land far away,", "def fibonacci(n):",
    "The three primary colors are", "In 1969, the first humans", "A good breakfast includes",
    "The quick brown fox", "To make a cup of tea, first",
]
KEY_NAME = "serve-bench"


def stream_one(base: str, key: str, prompt: str, max_tokens: int, **extra) -> dict:
    """One streamed completion: its text, token count, TTFT and the gaps between tokens (ms)."""
    body = {"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "logprobs": 0, "ignore_eos": True, **extra}  # logprobs: one event per token, even mid-character
    t0 = time.perf_counter()
    times, text = [], []
    with requests.post(f"{base}/v1/completions", json=body, headers={"Authorization": f"Bearer {key}"},
                       stream=True, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(chunk["error"]["message"])
            choice = chunk["choices"][0]
            if choice["finish_reason"] is None:
                times.append(time.perf_counter())
                text.append(choice["text"])
    gaps = np.diff(times) * 1000 if len(times) > 1 else np.array([])
    return {"text": "".join(text), "tokens": len(times), "ttft_ms": (times[0] - t0) * 1000 if times else float("nan"),
            "gaps_ms": gaps.tolist()}


def phase(base: str, key: str, clients: int, per_client: int, max_tokens: int, solo: dict, batcher) -> dict:
    """One concurrency level; besides the clients' view, the batcher's own engine calls in the same
    window: decode steps per batch size (median ms) and the share of the wall time spent in the
    engine (the rest: HTTP, tokenizing, sampling, hand-offs, idle)."""
    batcher.timings.clear()
    jobs = [[PROMPTS[(c + i * clients) % len(PROMPTS)] for i in range(per_client)] for c in range(clients)]

    def client(prompts):
        return [(p, stream_one(base, key, p, max_tokens)) for p in prompts]

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(clients) as pool:
        results = [r for rs in pool.map(client, jobs) for r in rs]
    wall = time.perf_counter() - t0
    calls = list(batcher.timings)
    steps: dict[int, list[float]] = {}
    for c in calls:
        if c.kind == "decode":
            steps.setdefault(c.rows, []).append(c.seconds * 1000)
    tokens = sum(r["tokens"] for _, r in results)
    ttft = [r["ttft_ms"] for _, r in results]
    gaps = [g for _, r in results for g in r["gaps_ms"]]
    return {
        "clients": clients, "requests": len(results), "tokens": tokens, "wall_s": wall,
        "tokens_per_s": tokens / wall,
        "ttft_p50_ms": float(np.percentile(ttft, 50)), "ttft_p99_ms": float(np.percentile(ttft, 99)),
        "token_p50_ms": float(np.percentile(gaps, 50)), "token_p99_ms": float(np.percentile(gaps, 99)),
        "equal_to_solo": all(r["text"] == solo[p] for p, r in results),
        "decode_ms_by_rows": {b: float(np.median(v)) for b, v in sorted(steps.items())},
        "decode_steps_by_rows": {b: len(v) for b, v in sorted(steps.items())},
        "engine_decode_s": sum(c.seconds for c in calls if c.kind == "decode"),
        "engine_prefill_s": sum(c.seconds for c in calls if c.kind == "prefill"),
    }


def logit_drift(model, new_engine, max_tokens: int) -> dict:
    """Max |Δ logit| between 8 prompts decoded together (joining one per step) and each alone."""
    ids = [model.tokenizer(p)["input_ids"] for p in PROMPTS]

    def alone(i):
        e, out = new_engine(), []
        logits = e.add(ids[i])
        for _ in range(max_tokens):
            out.append(logits)
            logits = e.step([argmax(logits)])[0]
        return out

    ref = [alone(i) for i in range(len(ids))]
    e = new_engine()
    rows, last, k_of = [], [], {}
    drift, flips, compared = 0.0, 0, 0
    for step in range(max_tokens + len(ids)):
        if step < len(ids):  # one prompt joins per step
            rows.append(step)
            k_of[step] = 0
            last.append(e.add(ids[step]))
        tokens, done = [], []
        for idx, (r, lg) in enumerate(zip(rows, last)):
            want = ref[r][k_of[r]]
            drift = max(drift, float((lg - want).abs().max()))
            flips += argmax(lg) != argmax(want)
            compared += 1
            tokens.append(argmax(want))  # every row follows its solo path
            k_of[r] += 1
            if k_of[r] == max_tokens:
                done.append(idx)
        e.remove(done)
        rows = [r for i, r in enumerate(rows) if i not in done]
        tokens = [t for i, t in enumerate(tokens) if i not in done]
        last = list(e.step(tokens)) if rows else []
    return {"max_abs_logit_delta": drift, "argmax_flips": flips, "steps_compared": compared}


def forward_cost(model, new_engine, bare: bool, rows=(1, 4, 8), context: int = 24, steps: int = 8,
                 rounds: int = 3) -> dict:
    """Median ms of one decode forward pass for each batch size in ``rows`` at ``context`` cached
    positions: ``engine.step`` (the server's call) and, when ``bare``, torch's bare module (no mask,
    no position ids). Batch sizes are interleaved over ``rounds`` so load changes hit them alike."""
    prompt = (model.tokenizer(" ".join(PROMPTS))["input_ids"] * 4)[:context]
    kinds = ("module", "engine") if bare else ("engine",)
    times = {(kind, b): [] for kind in kinds for b in rows}

    @torch.inference_mode()
    def module(b):
        out = model.module(input_ids=torch.tensor([prompt] * b), past_key_values=DynamicCache(), use_cache=True,
                           logits_to_keep=1)
        for _ in range(steps):
            ids = out.logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
            t0 = time.perf_counter()
            out = model.module(input_ids=ids, past_key_values=out.past_key_values, use_cache=True, logits_to_keep=1)
            times["module", b].append(time.perf_counter() - t0)

    def engine(b):
        e = new_engine()
        logits = e.advance(e.start([prompt] * b))
        for _ in range(steps):
            ids = [argmax(row) for row in logits]
            t0 = time.perf_counter()
            logits = e.step(ids)
            times["engine", b].append(time.perf_counter() - t0)

    for _ in range(rounds):
        for b in rows:
            if bare:
                module(b)
            engine(b)
    ms = {f"{kind}_{b}_ms": float(np.median(v)) * 1000 for (kind, b), v in times.items()}
    return {"context": context, "threads": torch.get_num_threads(), **ms}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", default="1,2,4,8")
    ap.add_argument("--requests", type=int, default=2, help="requests per client per phase")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--time-limit", type=float, default=900, help="seconds for the whole run")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    ap.add_argument("--backend", default="torch", help="torch or an ONNX Runtime variant (onnxruntime-fused, ...)")
    args = ap.parse_args()
    deadline = time.monotonic() + args.time_limit
    load_start = list(os.getloadavg())
    if args.threads:
        torch.set_num_threads(args.threads)
    store = Store()
    keys = KeyStore(store.home)
    keys.revoke(KEY_NAME)
    key = keys.create(KEY_NAME)
    app, registry = build_app(store, [MODEL], backend=args.backend, max_batch=8, max_waiting=64)
    registry.preload()
    server = ServerThread(app).start()
    rows, extra = [], {}
    try:
        stream_one(server.url, key, "Warm up", 4)
        solo = {p: stream_one(server.url, key, p, args.max_tokens)["text"] for p in PROMPTS}
        for c in [int(x) for x in args.concurrency.split(",")]:
            if time.monotonic() > deadline:
                print(f"time limit reached; skipped {c} clients", file=sys.stderr)
                continue
            rows.append(phase(server.url, key, c, args.requests, args.max_tokens, solo, registry.get(MODEL)))
            print(f"  {c} clients done: {rows[-1]['tokens_per_s']:.1f} tok/s", file=sys.stderr)
        if time.monotonic() < deadline:
            sampled = {"temperature": 0.8, "top_p": 0.95, "seed": 7}
            alone = [stream_one(server.url, key, p, args.max_tokens, **sampled)["text"] for p in PROMPTS[:4]]
            with cf.ThreadPoolExecutor(4) as pool:
                together = list(pool.map(lambda p: stream_one(server.url, key, p, args.max_tokens, **sampled)["text"],
                                         PROMPTS[:4]))
            extra["seeded_sampling_equal_at_4"] = together == alone
        if time.monotonic() < deadline:
            batcher = registry.get(MODEL)
            new_engine = lambda: make_engine(batcher.model, args.backend, store=store)
            with batcher.model.lock:
                extra["logits"] = logit_drift(batcher.model, new_engine, args.max_tokens)
        if time.monotonic() < deadline:
            with batcher.model.lock:
                extra["forward"] = forward_cost(batcher.model, new_engine, bare=args.backend == "torch")
    finally:
        server.stop()
        registry.close()
        keys.revoke(KEY_NAME)

    print(f"\nServing {MODEL} over HTTP ({args.backend}, continuous batching), {args.max_tokens} new tokens "
          f"per request, {args.requests} requests per client\n")
    print(f"{'clients':>7} {'requests':>8} {'tok/s':>7} {'x1':>5} {'TTFT p50':>9} {'TTFT p99':>9} "
          f"{'tok p50':>8} {'tok p99':>8}  equal to solo")
    base = rows[0]["tokens_per_s"] if rows else float("nan")
    for r in rows:
        r["speedup"] = r["tokens_per_s"] / base
        print(f"{r['clients']:>7} {r['requests']:>8} {r['tokens_per_s']:>7.1f} {r['speedup']:>5.2f} "
              f"{r['ttft_p50_ms']:>7.0f}ms {r['ttft_p99_ms']:>7.0f}ms {r['token_p50_ms']:>6.0f}ms "
              f"{r['token_p99_ms']:>6.0f}ms  {'yes' if r['equal_to_solo'] else 'NO'}")
    print("\nwhere each phase's wall time went (the batcher's own engine calls, same window):")
    print(f"{'clients':>7} {'decode':>7} {'prefill':>8} {'other':>6}  median decode step by rows (ms)")
    for r in rows:
        other = r["wall_s"] - r["engine_decode_s"] - r["engine_prefill_s"]
        by_rows = ", ".join(f"{b}: {ms:.0f}" for b, ms in r["decode_ms_by_rows"].items())
        print(f"{r['clients']:>7} {r['engine_decode_s'] / r['wall_s']:>7.0%} {r['engine_prefill_s'] / r['wall_s']:>8.0%} "
              f"{other / r['wall_s']:>6.0%}  {by_rows}")
    if "logits" in extra:
        lg = extra["logits"]
        print(f"\nbatching moves logits by at most {lg['max_abs_logit_delta']:.2e} "
              f"({lg['argmax_flips']} greedy flips in {lg['steps_compared']} steps)")
    if "seeded_sampling_equal_at_4" in extra:
        print(f"seeded sampling at 4 clients equals solo: {'yes' if extra['seeded_sampling_equal_at_4'] else 'no'}")
    if "forward" in extra:
        fw = extra["forward"]
        kind = "module" if "module_1_ms" in fw else "engine"  # torch: the bare module; ORT: its graph
        fw["ratio_4_vs_1"] = fw[f"{kind}_4_ms"] / fw[f"{kind}_1_ms"]
        fw["bound_4_clients"] = 4 / fw["ratio_4_vs_1"]
        print(f"\none decode forward at {fw['context']} cached positions, {fw['threads']} torch threads (ms):")
        print(f"{'rows':>6} {'module':>8} {'engine.step':>12}")
        for b in (1, 4, 8):
            bare = f"{fw[f'module_{b}_ms']:>8.1f}" if kind == "module" else f"{'-':>8}"
            print(f"{b:>6} {bare} {fw[f'engine_{b}_ms']:>12.1f}")
        print(f"4 rows cost {fw['ratio_4_vs_1']:.2f}x one row ({kind}): the forward pass alone bounds 4 "
              f"clients at {fw['bound_4_clients']:.2f}x one client")
    one = next((r for r in rows if r["clients"] == 1 and 1 in r["decode_ms_by_rows"]), None)
    if one:
        token, step = one["token_p50_ms"], one["decode_ms_by_rows"][1]
        print(f"one client's token through the server: {token:.0f} ms p50, of which the decode step "
              f"{step:.0f} ms (same window): {token - step:.0f} ms elsewhere")
    print(f"load average at the start {load_start[0]:.1f}, at the end {' / '.join(f'{x:.1f}' for x in os.getloadavg())} (1 / 5 / 15 min)")
    extra["load_average"], extra["load_average_start"] = list(os.getloadavg()), load_start
    four = next((r for r in rows if r["clients"] == 4), None)
    summary = {"model": MODEL, "backend": args.backend, "max_tokens": args.max_tokens, "rows": rows, **extra,
               "speedup_4_clients": four["speedup"] if four else None,
               "target_met": bool(four and four["speedup"] >= 2.5)}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
