"""torch eager vs ONNX Runtime on SmolLM2-135M fp32 (CPU), and our ORT loop vs onnxruntime-genai
running the very same exported graph (the fp32 graph, and the fused one).

    .venv/bin/python benchmarks/ort_vs_torch.py [--model smollm2-135m-instruct] [--new-tokens 64]

Prints a table for people and, as its last line, JSON for scripts:
``{"model", "torch_decode_p50_ms", "ort_decode_p50_ms", "decode_ratio", "parity": {...},
"genai": {"<backend>": {...}}, "bandwidth": {...}, "env": {...}}``. Ratios are taken within one run, the
backends taking turns, because the load on a shared machine moves absolute numbers by 1.5x.
The bandwidth ceiling (22.3 GB/s, 2 threads) was measured on this machine (../shared/ONNX.md).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from workbench.bench import BenchConfig, bench_prompt, record_speeds, run_benchmark, _generate_once  # noqa: E402
from workbench.generation import Generation  # noqa: E402
from workbench.loading import load_model, set_threads  # noqa: E402
from workbench.onnx_cli import format_table  # noqa: E402
from workbench.ort_backend import make_backend  # noqa: E402
from workbench.store import Store  # noqa: E402

BANDWIDTH_GB_S = 22.3  # measured here with 2 threads (../shared/ONNX.md)


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


def compare_genai(model, ours, export, new_tokens: int, context: int, rounds: int, threads: int) -> dict:
    try:
        import onnxruntime_genai as og
    except ImportError:
        return {"ran": False, "reason": "onnxruntime-genai is not installed (pip install .[bench])"}
    if hasattr(og, "disable_telemetry_events"):
        og.disable_telemetry_events()
    folder = genai_folder(export, model, threads)
    try:
        gmodel = og.Model(str(folder))
    except Exception as err:  # genai raises plain RuntimeError/OSError variants; report, don't hide
        return {"ran": False, "reason": f"onnxruntime-genai could not load our graph: {err}"}
    # the workbench's own generation loop (per-token probabilities, top-k, streamed text) as well
    # as the bare greedy loop; its prompt ids are the ones everybody gets
    text = model.tokenizer.decode(bench_prompt(model.tokenizer, context))
    settings = dict(max_new_tokens=new_tokens, stop_at_eos=False, top_alternatives=5)
    ids = Generation(model, text, backend=ours, **settings).prompt_ids
    tensor = torch.tensor([ids])
    genai_once(og, gmodel, ids, new_tokens)  # warm-up
    _generate_once(ours, tensor, new_tokens)
    g_steps, o_steps, g_mean, loop_mean = [], [], [], []
    for _ in range(rounds):  # take turns so both see the same machine load
        _, steps, _, g_tokens = genai_once(og, gmodel, ids, new_tokens)
        g_steps += steps
        g_mean.append(statistics.mean(steps))
        _, steps, _, o_tokens = _generate_once(ours, tensor, new_tokens)
        o_steps += steps
        result = Generation(model, text, backend=ours, **settings).run()
        loop_mean.append(result.decode_ms_per_token)
    g50, o50 = statistics.median(g_steps), statistics.median(o_steps)
    return {
        "ran": True, "graph": str(export.onnx_path), "rounds": rounds, "context": len(ids),
        "genai_decode_p50_ms": g50, "ours_decode_p50_ms": o50, "ours_over_genai_speed": g50 / o50,
        # means: Generation records its decode time per token as a mean
        "genai_decode_mean_ms": statistics.median(g_mean),
        "generation_loop_decode_mean_ms": statistics.median(loop_mean),
        "generation_loop_over_genai_speed": statistics.median(g_mean) / statistics.median(loop_mean),
        "same_tokens": g_tokens == o_tokens == result.token_ids,
        "tokens_equal": sum(a == b for a, b in zip(g_tokens, o_tokens)),
    }


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
    args = parser.parse_args(argv)
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
        genai[name] = g = compare_genai(model, ours, ours.export, args.new_tokens, 128, args.genai_rounds, threads)
        if g["ran"]:
            print(f"onnxruntime-genai on the {ours.export.variant} graph: {g['genai_decode_p50_ms']:.2f} ms/token, "
                  f"our greedy loop {g['ours_decode_p50_ms']:.2f} ms/token ({g['ours_over_genai_speed']:.3f}x genai's "
                  f"speed); means: genai {g['genai_decode_mean_ms']:.2f}, our Generation loop "
                  f"{g['generation_loop_decode_mean_ms']:.2f} ({g['generation_loop_over_genai_speed']:.3f}x); "
                  f"same tokens: {g['same_tokens']}")
        else:
            print(f"onnxruntime-genai: not compared: {g['reason']}")
    torch_r, ort_r = result.result("torch"), result.result("onnxruntime")
    bandwidth = {
        r.backend: {"weights_mb": r.weight_bytes / 1e6, "gb_per_s": r.weights_gb_per_s,
                    "share_of_ceiling": r.weights_gb_per_s / BANDWIDTH_GB_S}
        for r in result.results
    }
    for name, g in genai.items():
        if g["ran"]:
            gbs = ort_r.weight_bytes / (g["genai_decode_p50_ms"] / 1000) / 1e9
            bandwidth[f"genai on {name}"] = {"weights_mb": ort_r.weight_bytes / 1e6, "gb_per_s": gbs,
                                             "share_of_ceiling": gbs / BANDWIDTH_GB_S}
    for name, b in bandwidth.items():
        print(f"{name:<18} reads {b['weights_mb']:.0f} MB/token at {b['gb_per_s']:.1f} GB/s = "
              f"{b['share_of_ceiling']:.0%} of the {BANDWIDTH_GB_S} GB/s ceiling")
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
                "load_average": result.env["load_average"], "load_average_after": result.env["load_average_after"]},
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
