"""One LoRA training step of a store model on CPU, timed: forward + backward + AdamW on random
tokens, for a thread count, batch, sequence length and LoRA targets. No Trainer, no data, no
evaluation: what the settings cost, apart from everything else a job does.

    .venv/bin/python benchmarks/lora_step_bench.py [--model smollm2-135m-instruct] [--threads 1]
        [--batch 4] [--seq 128] [--targets all-linear|q_proj,v_proj] [--steps 3]

Prints one line for people (with the load average: on a shared machine it moves the result
more than any setting), then one line of JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from workbench.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--targets", default="all-linear")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    store = Store()
    module = AutoModelForCausalLM.from_pretrained(store.path(store.card(args.model).id), dtype=torch.float32)
    targets = args.targets if args.targets == "all-linear" else args.targets.split(",")
    model = get_peft_model(module, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=targets,
                                              task_type="CAUSAL_LM"))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, module.config.vocab_size, (args.batch, args.seq))  # (B, T)
    times = []
    for _ in range(args.steps + 1):
        start = time.perf_counter()
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - start)
    model.eval()
    with torch.no_grad():
        start = time.perf_counter()
        model(input_ids=ids)
        forward_s = time.perf_counter() - start
    tokens = args.batch * args.seq
    step_s = statistics.median(times[1:])
    result = {"model": args.model, "threads": args.threads, "batch": args.batch, "seq": args.seq,
              "targets": args.targets, "step_s": step_s, "first_step_s": times[0],
              "train_tokens_per_s": tokens / step_s, "forward_tokens_per_s": tokens / forward_s,
              "load_average": os.getloadavg()[0]}
    print(f"{args.threads} thread(s), {args.batch} x {args.seq}, {args.targets}: {result['train_tokens_per_s']:.1f} "
          f"training tokens/s (median step {step_s:.1f} s), forward {result['forward_tokens_per_s']:.0f} tokens/s, "
          f"load average {result['load_average']:.2f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
