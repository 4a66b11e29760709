"""Workbench generation vs plain transformers `generate()` on the same model, prompt and settings.

Greedy, exactly N new tokens on both sides (EOS ignored), runs interleaved so both see the same
machine load; medians over the repeats. Also: model load time from the store (imports done),
and time to first token. Prints a table, then one JSON line.

    .venv/bin/python benchmarks/generate_overhead.py [--model ID] [--new-tokens 64] [--repeats 5]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from workbench.runtime import loading
from workbench.store import Store


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--prompt", default="Once upon a time, in a small village by the sea,")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    store = Store()
    store.install(args.model)
    t0 = time.perf_counter()
    model = loading.load_model(args.model, store=store, device="cpu", threads=args.threads)
    first_load = time.perf_counter() - t0
    loading.unload(args.model)
    t0 = time.perf_counter()
    model = loading.load_model(args.model, store=store, device="cpu", threads=args.threads)
    warm_load = time.perf_counter() - t0

    n = args.new_tokens
    ids = torch.tensor([model.tokenizer(args.prompt)["input_ids"]])
    mask = torch.ones_like(ids)

    def ours():
        t = time.perf_counter()
        r = model.generate(args.prompt, max_new_tokens=n, min_new_tokens=n, stop_at_eos=False)
        return time.perf_counter() - t, r

    def hf():
        t = time.perf_counter()
        with torch.inference_mode():
            out = model.module.generate(ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                                        do_sample=False, pad_token_id=model.tokenizer.eos_token_id)
        return time.perf_counter() - t, out[0, ids.shape[1]:].tolist()

    ours(), hf()  # warm-up
    ours_s, hf_s, ttft = [], [], []
    same = True
    for _ in range(args.repeats):
        s, r = ours()
        ours_s.append(s)
        ttft.append(r.ttft_ms)
        s2, ref = hf()
        hf_s.append(s2)
        same &= r.token_ids == ref
    o, h = statistics.median(ours_s), statistics.median(hf_s)
    result = {
        "model": args.model,
        "threads": torch.get_num_threads(),
        "new_tokens": n,
        "prompt_tokens": int(ids.shape[1]),
        "workbench_s": o,
        "hf_generate_s": h,
        "workbench_tok_s": n / o,
        "hf_generate_tok_s": n / h,
        "overhead_pct": (o / h - 1) * 100,
        "same_tokens": same,
        "ttft_ms_p50": statistics.median(ttft),
        "first_load_s": first_load,
        "cached_load_s": warm_load,
    }
    print(f"{'':28}{'workbench':>12}{'HF generate':>14}")
    print(f"{'median seconds, ' + str(n) + ' tokens':28}{o:12.3f}{h:14.3f}")
    print(f"{'tokens / s':28}{n / o:12.1f}{n / h:14.1f}")
    print(f"overhead: {result['overhead_pct']:+.1f}%   identical tokens: {same}")
    print(f"time to first token p50: {result['ttft_ms_p50']:.0f} ms; load from store: first "
          f"{first_load:.2f} s, cached {warm_load:.2f} s ({torch.get_num_threads()} threads)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
