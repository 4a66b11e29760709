"""Throughput of the HTTP server with continuous batching, on the real default model.

Starts the server in this process on a free 127.0.0.1 port (a temporary API key, revoked at the
end), then for 1, 2, 4 and 8 concurrent clients each client sends ``--requests`` streamed greedy
completions (``/v1/completions``, ``max_tokens`` new tokens, end-of-sequence ignored so every
request does the same work). Per phase: aggregate generated tokens/s over the phase's wall time,
time to first token and per-token latency (gaps between a stream's tokens) p50/p99, seen by the
clients, and whether every output equals the same prompt's solo output. Then, in-process: how far
batching moves the logits (max |Δ| over every step of 8 prompts decoded together vs alone) and
whether seeded sampled requests give the solo text at concurrency 4.

Uses the store at $WORKBENCH_HOME (default ~/.cache/gpt-store-workbench). Prints a table, then one
JSON line. Bounded: ``--requests`` per client and ``--time-limit`` seconds in all.

    .venv/bin/python benchmarks/serve_bench.py [--concurrency 1,2,4,8] [--requests 2] [--max-tokens 32]
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import sys
import time

import numpy as np
import requests


from workbench.runtime.sampling import argmax
from workbench.serve.engine import TorchBatchEngine
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


def phase(base: str, key: str, clients: int, per_client: int, max_tokens: int, solo: dict) -> dict:
    jobs = [[PROMPTS[(c + i * clients) % len(PROMPTS)] for i in range(per_client)] for c in range(clients)]

    def client(prompts):
        return [(p, stream_one(base, key, p, max_tokens)) for p in prompts]

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(clients) as pool:
        results = [r for rs in pool.map(client, jobs) for r in rs]
    wall = time.perf_counter() - t0
    tokens = sum(r["tokens"] for _, r in results)
    ttft = [r["ttft_ms"] for _, r in results]
    gaps = [g for _, r in results for g in r["gaps_ms"]]
    return {
        "clients": clients, "requests": len(results), "tokens": tokens, "wall_s": wall,
        "tokens_per_s": tokens / wall,
        "ttft_p50_ms": float(np.percentile(ttft, 50)), "ttft_p99_ms": float(np.percentile(ttft, 99)),
        "token_p50_ms": float(np.percentile(gaps, 50)), "token_p99_ms": float(np.percentile(gaps, 99)),
        "equal_to_solo": all(r["text"] == solo[p] for p, r in results),
    }


def logit_drift(model, max_tokens: int) -> dict:
    """Max |Δ logit| between 8 prompts decoded together (joining one per step) and each alone."""
    ids = [model.tokenizer(p)["input_ids"] for p in PROMPTS]

    def alone(i):
        e, out = TorchBatchEngine(model), []
        logits = e.add(ids[i])
        for _ in range(max_tokens):
            out.append(logits)
            logits = e.step([argmax(logits)])[0]
        return out

    ref = [alone(i) for i in range(len(ids))]
    e = TorchBatchEngine(model)
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", default="1,2,4,8")
    ap.add_argument("--requests", type=int, default=2, help="requests per client per phase")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--time-limit", type=float, default=900, help="seconds for the whole run")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    args = ap.parse_args()
    deadline = time.monotonic() + args.time_limit
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    store = Store()
    keys = KeyStore(store.home)
    keys.revoke(KEY_NAME)
    key = keys.create(KEY_NAME)
    app, registry = build_app(store, [MODEL], max_batch=8, max_waiting=64)
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
            rows.append(phase(server.url, key, c, args.requests, args.max_tokens, solo))
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
            with batcher.model.lock:
                extra["logits"] = logit_drift(batcher.model, args.max_tokens)
    finally:
        server.stop()
        registry.close()
        keys.revoke(KEY_NAME)

    print(f"\nServing {MODEL} over HTTP (torch eager, continuous batching), {args.max_tokens} new tokens "
          f"per request, {args.requests} requests per client\n")
    print(f"{'clients':>7} {'requests':>8} {'tok/s':>7} {'x1':>5} {'TTFT p50':>9} {'TTFT p99':>9} "
          f"{'tok p50':>8} {'tok p99':>8}  equal to solo")
    base = rows[0]["tokens_per_s"] if rows else float("nan")
    for r in rows:
        r["speedup"] = r["tokens_per_s"] / base
        print(f"{r['clients']:>7} {r['requests']:>8} {r['tokens_per_s']:>7.1f} {r['speedup']:>5.2f} "
              f"{r['ttft_p50_ms']:>7.0f}ms {r['ttft_p99_ms']:>7.0f}ms {r['token_p50_ms']:>6.0f}ms "
              f"{r['token_p99_ms']:>6.0f}ms  {'yes' if r['equal_to_solo'] else 'NO'}")
    if "logits" in extra:
        lg = extra["logits"]
        print(f"\nbatching moves logits by at most {lg['max_abs_logit_delta']:.2e} "
              f"({lg['argmax_flips']} greedy flips in {lg['steps_compared']} steps)")
    if "seeded_sampling_equal_at_4" in extra:
        print(f"seeded sampling at 4 clients equals solo: {'yes' if extra['seeded_sampling_equal_at_4'] else 'no'}")
    four = next((r for r in rows if r["clients"] == 4), None)
    summary = {"model": MODEL, "max_tokens": args.max_tokens, "rows": rows, **extra,
               "speedup_4_clients": four["speedup"] if four else None,
               "target_met": bool(four and four["speedup"] >= 2.5)}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
