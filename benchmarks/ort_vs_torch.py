"""torch eager vs ONNX Runtime on SmolLM2-135M fp32 (CPU), and our ORT loop vs onnxruntime-genai
running the very same exported graph (the fp32 graph, and the fused one).

    .venv/bin/python benchmarks/ort_vs_torch.py [--model smollm2-135m-instruct] [--new-tokens 64]

Prints a table for people and, as its last line, JSON for scripts:
``{"model", "torch_decode_p50_ms", "ort_decode_p50_ms", "decode_ratio", "parity": {...},
"genai": {"<backend>": {"in_process": {...}, "separate_processes": {...}}}, "bandwidth": {...},
"env": {...}}``. Ratios are taken within one run, the backends taking turns, because the load on a
shared machine moves absolute numbers a lot. The memory read ceiling is measured in the same run
with the same thread count (``env["memory_read"]`` of the result; machines differ a lot).

Our loop against onnxruntime-genai is measured two ways. In one process (this one), the two
runtimes share it: two copies of ONNX Runtime, two thread pools, two copies of the weights, and
which of them loaded first moves the ratio a little. In separate processes, each runtime runs
in a fresh process of its own (``--worker``), as a user would run it, and the two take turns on
command so they see the same machine load; only one of them computes at any time.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


import torch  # noqa: E402

from workbench.latency.harness import BenchConfig, bench_prompt, run_benchmark, generate_once
from workbench.latency.speeds import record_speeds  # noqa: E402
from workbench.runtime.generation import Generation  # noqa: E402
from workbench.runtime.loading import load_model, set_threads  # noqa: E402
from workbench.cli.onnx import format_table  # noqa: E402
from workbench.onnx.cache import cached_export  # noqa: E402
from workbench.runtime.backends import make_backend
from workbench.runtime.backends.ort import BACKEND_VARIANTS, OrtBackend  # noqa: E402
from workbench.store import Store  # noqa: E402

NO_GENAI = "onnxruntime-genai is not installed (pip install .[bench])"


def genai_folder(export, model, threads: int) -> Path:
    """A folder onnxruntime-genai can open: links to our graph plus a genai_config.json."""
    cfg = model.config
    folder = Path(tempfile.mkdtemp(prefix="genai-"))
    for name in ("model.onnx", "model.onnx.data"):
        os.symlink(export.directory / name, folder / name)
    eos = sorted(model.eos_token_ids)
    config = {
        "model": {
            "bos_token_id": cfg.bos_token_id, "eos_token_id": eos, "pad_token_id": cfg.pad_token_id or eos[0],
            "context_length": model.context_length, "type": cfg.model_type, "vocab_size": export.vocab_size,
            "decoder": {
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": [],
                                    "intra_op_num_threads": threads, "inter_op_num_threads": 1},
                "filename": "model.onnx", "head_size": export.head_dim, "hidden_size": cfg.hidden_size,
                "num_attention_heads": cfg.num_attention_heads, "num_hidden_layers": export.num_layers,
                "num_key_value_heads": export.kv_heads,
                "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask",
                           "position_ids": "position_ids", "past_key_names": "past_key_values.%d.key",
                           "past_value_names": "past_key_values.%d.value"},
                "outputs": {"logits": "logits", "present_key_names": "present.%d.key",
                            "present_value_names": "present.%d.value"},
            },
        },
        # our graph concatenates past and new keys, so genai must not share one buffer
        "search": {"do_sample": False, "num_beams": 1, "max_length": model.context_length, "min_length": 0,
                   "past_present_share_buffer": False, "top_k": 1, "temperature": 1.0, "top_p": 1.0,
                   "repetition_penalty": 1.0, "num_return_sequences": 1, "early_stopping": True},
    }
    (folder / "genai_config.json").write_text(json.dumps(config, indent=2))
    return folder


def genai_once(og, gmodel, ids: list[int], new_tokens: int):
    """Greedy ``new_tokens`` with genai: (ttft ms, [per-step ms], e2e ms, tokens)."""
    params = og.GeneratorParams(gmodel)
    params.set_search_options(max_length=len(ids) + new_tokens, min_length=len(ids) + new_tokens, do_sample=False)
    start = time.perf_counter()
    gen = og.Generator(gmodel, params)
    gen.append_tokens(ids)  # runs the prefill (logits of the last prompt token)
    gen.generate_next_token()  # picks the first new token from those logits
    tokens = [int(gen.get_next_tokens()[0])]
    ttft = (time.perf_counter() - start) * 1000
    steps = []
    for _ in range(new_tokens - 1):
        t = time.perf_counter()
        gen.generate_next_token()
        tokens.append(int(gen.get_next_tokens()[0]))
        steps.append((time.perf_counter() - t) * 1000)
    return ttft, steps, (time.perf_counter() - start) * 1000, tokens


def _load_genai(export, model, threads: int):
    """``(onnxruntime_genai, og.Model)`` on our graph; RuntimeError says why not."""
    try:
        import onnxruntime_genai as og
    except ImportError:
        raise RuntimeError(NO_GENAI) from None
    if hasattr(og, "disable_telemetry_events"):
        og.disable_telemetry_events()
    try:
        return og, og.Model(str(genai_folder(export, model, threads)))
    except Exception as err:  # genai raises plain RuntimeError/OSError variants; report, don't hide
        raise RuntimeError(f"onnxruntime-genai could not load our graph: {err}") from err


def _loop_inputs(model, context: int, new_tokens: int) -> tuple[str, list[int], dict]:
    """The bench text, the prompt ids the Generation loop makes of it (everybody gets these), and
    the Generation loop's settings (per-token probabilities, top-5, streamed text)."""
    text = model.tokenizer.decode(bench_prompt(model.tokenizer, context))
    settings = dict(max_new_tokens=new_tokens, stop_at_eos=False, top_alternatives=5)
    return text, Generation(model, text, **settings).prompt_ids, settings


def _comparison(steps: dict, means: dict, loop_means: list, same_tokens: bool, **extra) -> dict:
    """The comparison's numbers from per-step ms and per-round means of ``ours`` and ``genai``."""
    g50, o50 = statistics.median(steps["genai"]), statistics.median(steps["ours"])
    return {
        "ran": True, **extra, "genai_decode_p50_ms": g50, "ours_decode_p50_ms": o50,
        "ours_over_genai_speed": g50 / o50,
        # means: Generation records its decode time per token as a mean
        "genai_decode_mean_ms": statistics.median(means["genai"]),
        "generation_loop_decode_mean_ms": statistics.median(loop_means),
        "generation_loop_over_genai_speed": statistics.median(means["genai"]) / statistics.median(loop_means),
        "same_tokens": same_tokens,
    }


def compare_genai(model, ours, export, new_tokens: int, context: int, rounds: int, threads: int) -> dict:
    """Our loop and genai's in this process, taking turns."""
    try:
        og, gmodel = _load_genai(export, model, threads)
    except RuntimeError as err:
        return {"ran": False, "reason": str(err)}
    text, ids, settings = _loop_inputs(model, context, new_tokens)
    tensor = torch.tensor([ids])
    genai_once(og, gmodel, ids, new_tokens)  # warm-up
    generate_once(ours, tensor, new_tokens)
    steps, means, loop_means = {"ours": [], "genai": []}, {"ours": [], "genai": []}, []
    for _ in range(rounds):  # take turns so both see the same machine load
        _, g, _, g_tokens = genai_once(og, gmodel, ids, new_tokens)
        _, o, _, o_tokens = generate_once(ours, tensor, new_tokens)
        for kind, s in (("genai", g), ("ours", o)):
            steps[kind] += s
            means[kind].append(statistics.mean(s))
        result = Generation(model, text, backend=ours, **settings).run()
        loop_means.append(result.decode_ms_per_token)
    return _comparison(steps, means, loop_means, g_tokens == o_tokens == result.token_ids,
                       graph=str(export.onnx_path), rounds=rounds, context=len(ids))


def worker(kind: str, model_id: str, name: str, new_tokens: int, context: int, threads: int) -> int:
    """One runtime in a process of its own: load, print ``ready``, then answer each command read
    from stdin (``greedy``: one bare greedy generation; ``generation``: our full Generation loop)
    with one JSON line."""
    answers, sys.stdout = sys.stdout, sys.stderr  # whatever the libraries print stays off the protocol
    store = Store()
    model = load_model(model_id, store=store, device="cpu", threads=set_threads(threads))
    export = cached_export(store, model_id, BACKEND_VARIANTS[name], verify=False)
    if export is None:
        error = f"no cached {name} export of {model_id}: run the benchmark first"
        print(json.dumps({"error": error}), file=answers, flush=True)
        return 1
    text, ids, settings = _loop_inputs(model, context, new_tokens)
    if kind == "genai":
        try:
            og, gmodel = _load_genai(export, model, threads)
        except RuntimeError as err:
            print(json.dumps({"error": str(err)}), file=answers, flush=True)
            return 1
        greedy = lambda: genai_once(og, gmodel, ids, new_tokens)  # noqa: E731
    else:
        ours = OrtBackend(export, "cpu", threads, name=name)
        tensor = torch.tensor([ids])
        greedy = lambda: generate_once(ours, tensor, new_tokens)  # noqa: E731
    greedy()  # warm-up
    print("ready", file=answers, flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "greedy":
            _, steps, _, tokens = greedy()
            answer = {"steps": steps, "tokens": tokens}
        elif command == "generation" and kind == "ours":
            result = Generation(model, text, backend=ours, **settings).run()
            answer = {"decode_mean_ms": result.decode_ms_per_token, "tokens": result.token_ids}
        else:
            answer = {"error": f"unknown command {command!r}"}
        print(json.dumps(answer), file=answers, flush=True)
    return 0


class _Worker:
    def __init__(self, kind: str, args: list[str]):
        self.kind = kind
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", kind, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.proc.kill()
            raise RuntimeError(f"the {kind} worker did not start: {line or 'no output'}")

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.kind} worker exited (exit status {self.proc.wait()})")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"{self.kind} worker: {answer['error']}")
        return answer

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def compare_in_separate_processes(model_id: str, name: str, new_tokens: int, context: int, rounds: int,
                                  threads: int) -> dict:
    """Our loop and genai's, each in a fresh process, taking turns (the order flips each round)."""
    if importlib.util.find_spec("onnxruntime_genai") is None:
        return {"ran": False, "reason": NO_GENAI}
    args = ["--model", model_id, "--backends", name, "--new-tokens", str(new_tokens),
            "--context", str(context), "--threads", str(threads)]
    workers = {}
    try:
        for kind in ("ours", "genai"):
            workers[kind] = _Worker(kind, args)
            time.sleep(1.0)  # let its pool threads go idle before the other starts
        steps = {"ours": [], "genai": []}
        means = {"ours": [], "genai": []}
        tokens = {}
        loop_means = []
        for r in range(rounds):
            for kind in ("ours", "genai") if r % 2 == 0 else ("genai", "ours"):
                answer = workers[kind].ask("greedy")
                steps[kind] += answer["steps"]
                means[kind].append(statistics.mean(answer["steps"]))
                tokens[kind] = answer["tokens"]
            answer = workers["ours"].ask("generation")
            loop_means.append(answer["decode_mean_ms"])
        per_round = [g / o for g, o in zip(means["genai"], means["ours"])]
    except RuntimeError as err:
        return {"ran": False, "reason": str(err)}
    finally:
        for w in workers.values():
            w.close()
    return _comparison(steps, means, loop_means, tokens["ours"] == tokens["genai"] == answer["tokens"],
                       rounds=rounds, per_round_speed=per_round)  # genai's mean step / ours, per round


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompt-lengths", default="16,128,512")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--min-time", type=float, default=2.0)
    parser.add_argument("--genai-rounds", type=int, default=3)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--backends", default="torch,onnxruntime,onnxruntime-fused,onnxruntime-int8",
                        help="torch and onnxruntime are required; onnxruntime-int8 shows quantization drift")
    parser.add_argument("--context", type=int, default=128, help="prompt length of the genai comparison")
    parser.add_argument("--worker", choices=("ours", "genai"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.model, args.backends, args.new_tokens, args.context, args.threads)
    threads = set_threads(args.threads or len(os.sched_getaffinity(0)))
    store = Store()
    model = load_model(args.model, store=store, device="cpu", threads=threads)
    names = list(dict.fromkeys(["torch", "onnxruntime"] + args.backends.split(",")))
    backends = {name: make_backend(model, name, threads=threads, store=store) for name in names}
    lengths = tuple(int(x) for x in args.prompt_lengths.split(","))
    config = BenchConfig(prompt_lengths=lengths, new_tokens=args.new_tokens, decode_prompt_length=128,
                         min_repeats=args.repeats, min_time_s=args.min_time, threads=threads)
    result = run_benchmark(model, backends, config, progress=lambda f, m: print(f"\r{f:4.0%} {m[:60]:<60}", end="", file=sys.stderr))
    print(file=sys.stderr)
    record_speeds(store, result)
    print(format_table(result))
    genai = {}
    for name in ("onnxruntime", "onnxruntime-fused"):
        if name not in backends:
            continue
        ours = backends[name]
        genai[name] = {
            "in_process": compare_genai(model, ours, ours.export, args.new_tokens, args.context, args.genai_rounds, threads),
            "separate_processes": compare_in_separate_processes(
                args.model, name, args.new_tokens, args.context, 2 * args.genai_rounds, threads),
        }
        for how, g in genai[name].items():
            if g["ran"]:
                print(f"onnxruntime-genai on the {ours.export.variant} graph, {how.replace('_', ' ')}: "
                      f"{g['genai_decode_p50_ms']:.2f} ms/token, our greedy loop {g['ours_decode_p50_ms']:.2f} "
                      f"({g['ours_over_genai_speed']:.3f}x genai's speed); means: genai {g['genai_decode_mean_ms']:.2f}, "
                      f"our Generation loop {g['generation_loop_decode_mean_ms']:.2f} "
                      f"({g['generation_loop_over_genai_speed']:.3f}x); same tokens: {g['same_tokens']}")
                if "per_round_speed" in g:
                    print("  per round, ours/genai speed: " + " ".join(f"{x:.3f}" for x in g["per_round_speed"]))
            else:
                print(f"onnxruntime-genai ({how}): not compared: {g['reason']}")
    torch_r, ort_r = result.result("torch"), result.result("onnxruntime")
    ceiling = result.bandwidth_gb_s
    bandwidth = {
        r.backend: {"weights_mb": r.weight_bytes / 1e6, "gb_per_s": r.weights_gb_per_s,
                    "share_of_ceiling": r.weights_gb_per_s / ceiling}
        for r in result.results
    }
    for name, both in genai.items():
        g = both["separate_processes"] if both["separate_processes"]["ran"] else both["in_process"]
        if g["ran"]:
            gbs = ort_r.weight_bytes / (g["genai_decode_p50_ms"] / 1000) / 1e9
            bandwidth[f"genai on {name}"] = {"weights_mb": ort_r.weight_bytes / 1e6, "gb_per_s": gbs,
                                             "share_of_ceiling": gbs / ceiling}
    for name, b in bandwidth.items():
        print(f"{name:<18} reads {b['weights_mb']:.0f} MB/token at {b['gb_per_s']:.1f} GB/s = "
              f"{b['share_of_ceiling']:.0%} of the {ceiling:.1f} GB/s ceiling measured in this run")
    parity = result.parity["onnxruntime"]
    drift = {name: {"max_abs_diff": p.max_abs_diff, "greedy_match": p.greedy_match, "greedy_total": p.greedy_total,
                    "passed": p.passed, "decode_p50_ms": result.result(name).decode.p50}
             for name, p in result.parity.items()}
    summary = {
        "model": result.model,
        "torch_decode_p50_ms": torch_r.decode.p50,
        "ort_decode_p50_ms": ort_r.decode.p50,
        "decode_ratio": torch_r.decode.p50 / ort_r.decode.p50,
        "prefill_p50_ms": {r.backend: {str(n): lat.p50 for n, lat in r.prefill.items()} for r in result.results},
        "tokens_per_s": {r.backend: r.tokens_per_s for r in result.results},
        "parity": {"max_abs_diff": parity.max_abs_diff, "greedy_match": parity.greedy_match,
                   "greedy_total": parity.greedy_total, "passed": parity.passed},
        "variants": drift,
        "genai": genai,
        "bandwidth": bandwidth,
        "env": {"cpu": result.env["cpu"], "cores": result.env["cores"], "threads": threads,
                "memory_read": result.env["memory_read"],
                "load_average": result.env["load_average"], "load_average_after": result.env["load_average_after"]},
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
