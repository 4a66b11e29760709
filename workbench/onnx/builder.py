"""The child side of an export, run as ``python -m workbench.onnx.builder`` in its own process (a
crash or the OOM killer takes only it): builds one variant's graph into ``--out`` and writes its
manifest. Progress goes to stdout as JSON lines; everything else (the exporter's chatter) to
stderr, which the parent keeps as a log.

Variants: ``fp32`` (``torch.onnx.export(dynamo=True)`` of a wrapper with the KV cache in and out),
``fused`` (that graph rewritten by transformers' ``fuse_for_onnxruntime``), ``int8``
(``quantize_dynamic`` of the fp32 graph with constants folded), ``q4`` / ``q4a8`` (the fused graph
with the GGUF's own blocks as weights, activations fp32 / int8; see ``nbits``), ``gqa`` (ONNX
Runtime's own decode graph from onnxruntime-genai's model builder, see ``genai_graph``) and
``gqa_q4`` / ``gqa_q4a8`` (that graph with the GGUF's own blocks). Checked against torch before
the parent accepts it.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

from ..common import cpu_count, text_config
from ..errors import ExportError
from .spec import (
    DATA_FILE,
    EXPORT_FORMAT,
    EXPORT_MANIFEST,
    GRAPHS,
    ONNX_FILE,
    VARIANTS,
    WIDE_CODES_ENV,
    describe_files,
    export_versions,
    past_names,
    wide_codes_mode,
)

_PROGRESS_OUT = sys.stdout  # the child points this at the real stdout, everything else at stderr


def _say(lo: float, hi: float, message: str) -> None:
    """Tell the parent a phase from ``lo`` to ``hi`` (fractions of this export) has begun."""
    _PROGRESS_OUT.write(json.dumps({"lo": lo, "hi": hi, "message": message}) + "\n")
    _PROGRESS_OUT.flush()


def _kv_shape(config) -> tuple[int, int, int]:
    text = text_config(config)
    layers = text.num_hidden_layers
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return layers, kv_heads, head_dim


def _wrapper(module, layers: int):
    import torch
    from transformers import DynamicCache

    class KVDecoder(torch.nn.Module):
        """Flat past tensors in, last-position logits and flat present tensors out."""

        def __init__(self):
            super().__init__()
            self.model = module

        def forward(self, input_ids, attention_mask, position_ids, past):
            cache = DynamicCache(ddp_cache_data=[(past[2 * i], past[2 * i + 1]) for i in range(layers)])
            out = self.model(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                past_key_values=cache, use_cache=True, logits_to_keep=1,
            )
            present = []
            for layer in out.past_key_values.layers:
                present += [layer.keys, layer.values]
            return (out.logits,) + tuple(present)  # (B, 1, V), (B, H, P+S, D) x 2L

    return KVDecoder().eval()


def _name_dims(path: Path, layers: int) -> None:
    """Give the graph's symbolic dims readable names (the exporter calls them s10, s70, ...)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    names = {
        "input_ids": ["batch", "sequence"],
        "position_ids": ["batch", "sequence"],
        "attention_mask": ["batch", "total_sequence"],
        "logits": ["batch", None, None],
    }
    for i in range(layers):
        for kind in ("key", "value"):
            names[f"past_key_values.{i}.{kind}"] = ["batch", None, "past_sequence", None]
            names[f"present.{i}.{kind}"] = ["batch", None, "total_sequence", None]
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        for dim, name in zip(dims, names.get(value.name, [])):
            if name and dim.HasField("dim_param"):
                dim.dim_param = name
    onnx.save(proto, str(path))


def _self_check(onnx_path: Path, module, layers: int, kv_heads: int, head_dim: int, vocab: int, threads: int) -> float:
    """Max |Δlogits| of ORT vs torch on a 6-token prompt and one cached step."""
    import numpy as np
    import onnxruntime as ort
    import torch

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    ids = torch.arange(6, dtype=torch.long).unsqueeze(0) % vocab + 1  # (1, 6)
    with torch.no_grad():
        ref = module(torch.cat([ids, ids[:, :1]], 1)).logits[0]  # (7, V)
    feed = {"input_ids": ids.numpy(), "attention_mask": np.ones((1, 6), np.int64),
            "position_ids": np.arange(6, dtype=np.int64)[None]}
    for name in past_names(layers, "past_key_values"):
        feed[name] = np.zeros((1, kv_heads, 0, head_dim), np.float32)
    outs = sess.run(None, feed)
    diff = float(np.abs(outs[0][0, -1] - ref[5].numpy()).max())
    feed = {"input_ids": ids[:, :1].numpy(), "attention_mask": np.ones((1, 7), np.int64),
            "position_ids": np.array([[6]], np.int64)}
    feed.update(zip(past_names(layers, "past_key_values"), outs[1:]))
    outs = sess.run(None, feed)
    if outs[0].shape != (1, 1, vocab) or outs[1].shape[2] != 7:
        raise ExportError(f"The exported graph returned shapes {outs[0].shape} / {outs[1].shape}; expected "
                          f"(1, 1, {vocab}) and a cache of length 7.")
    return max(diff, float(np.abs(outs[0][0, -1] - ref[6].numpy()).max()))


def _child_fp32(model_dir: Path, out: Path, threads: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    _say(0.0, 0.05, "loading the model")
    module = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="sdpa", use_safetensors=True,
        trust_remote_code=False, local_files_only=True,
    ).eval()
    layers, kv_heads, head_dim = _kv_shape(module.config)
    vocab = module.get_output_embeddings().weight.shape[0]
    wrapper = _wrapper(module, layers)
    batch, seq, past_len = 2, 3, 5  # none is 1, so none gets specialized away
    ids = torch.randint(1, vocab, (batch, seq))
    mask = torch.ones(batch, past_len + seq, dtype=torch.long)
    pos = torch.arange(past_len, past_len + seq).unsqueeze(0).expand(batch, seq)
    past = tuple(torch.randn(batch, kv_heads, past_len, head_dim) for _ in range(2 * layers))
    auto = torch.export.Dim.AUTO
    dynamic = ({0: auto, 1: auto}, {0: auto, 1: auto}, {0: auto, 1: auto},
               tuple({0: auto, 2: auto} for _ in past))
    _say(0.05, 0.80, "tracing and converting the graph (torch.onnx dynamo exporter)")
    program = torch.onnx.export(
        wrapper, (ids, mask, pos, past), dynamo=True, dynamic_shapes=dynamic, optimize=True,
        input_names=["input_ids", "attention_mask", "position_ids"] + past_names(layers, "past_key_values"),
        output_names=["logits"] + past_names(layers, "present"), verbose=False,
    )
    if program is None:
        raise ExportError("torch.onnx.export returned no program.")
    _say(0.80, 0.90, "saving the graph")
    path = out / ONNX_FILE
    program.save(str(path), external_data=True)
    del program
    produced = sorted(p.name for p in out.iterdir())
    if produced != sorted([ONNX_FILE, DATA_FILE]):
        raise ExportError(f"The exporter wrote {produced}, expected {ONNX_FILE} and {DATA_FILE}.")
    _name_dims(path, layers)
    _say(0.90, 0.98, "checking the graph against torch")
    diff = _self_check(path, module, layers, kv_heads, head_dim, vocab, threads)
    return dict(num_layers=layers, kv_heads=kv_heads, head_dim=head_dim, vocab_size=vocab,
                self_check_max_abs_diff=diff)


def _child_int8(model_dir: Path, source: Path, out: Path, threads: int) -> dict:
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    meta = json.loads((source / EXPORT_MANIFEST).read_text(encoding="utf-8"))
    _say(0.0, 0.3, "folding constants (so the tied LM head is quantized too)")
    folded = out.parent / "folded.onnx"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(folded)
    opts.add_session_config_entry("session.optimized_model_external_initializers_file_name", "folded.onnx.data")
    opts.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    ort.InferenceSession(str(source / ONNX_FILE), opts, providers=["CPUExecutionProvider"])
    _say(0.3, 0.85, "quantizing weights to 8 bits (dynamic, per tensor)")
    # uint8 weights: on AVX2 without VNNI, int8 weights x uint8 activations saturate in 16-bit
    # sums (ONNX Runtime's quantization docs); on SmolLM2 uint8 kept more greedy tokens equal to
    # torch than int8 or per-channel int8 (the Latency page's parity check shows it per model)
    quantize_dynamic(
        folded, out / ONNX_FILE, weight_type=QuantType.QUInt8, per_channel=False,
        op_types_to_quantize=["MatMul", "Gemm"], use_external_data_format=True,
        extra_options={"MatMulConstBOnly": True},
    )
    for f in out.parent.glob("folded.onnx*"):
        f.unlink()
    data = [p for p in out.iterdir() if p.name != ONNX_FILE]
    if len(data) == 1 and data[0].name != DATA_FILE:  # the quantizer names the data file itself
        import onnx

        proto = onnx.load(str(out / ONNX_FILE))
        for p in data:
            p.unlink()
        onnx.save(proto, str(out / ONNX_FILE), save_as_external_data=True, location=DATA_FILE)
    _say(0.85, 0.98, "checking the quantized graph runs")
    return _checked_facts(model_dir, meta, out, threads)


def _checked_facts(model_dir: Path, meta: dict, out: Path, threads: int) -> dict:
    """The source export's shape facts plus the self-check of the graph now in ``out``."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    module = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, use_safetensors=True, local_files_only=True
    ).eval()
    keys = ("num_layers", "kv_heads", "head_dim", "vocab_size")
    diff = _self_check(out / ONNX_FILE, module, *(meta[k] for k in keys), threads)
    return dict({k: meta[k] for k in keys}, self_check_max_abs_diff=diff)


def _child_fused(model_dir: Path, source: Path, out: Path, threads: int) -> dict:
    """The fp32 graph, rewritten into ONNX Runtime's fused CPU ops. transformers 5.23's
    ``fuse_for_onnxruntime`` (built on onnxscript's ORT fusions) replaces each pattern with an
    op computing exactly what it replaces; on a Llama-like graph (dynamic batch and length,
    attention mask kept) it fuses rotary embeddings, skip RMS norms and the packed q/k/v
    projection (GPT-2: skip layer norms).
    Attention itself stays unfused: ``GroupQueryAttention`` needs a batch-1 decode graph, and
    ONNX Runtime's CPU ``MultiHeadAttention`` is slower than the ops it would replace."""
    import onnx_ir as ir
    from transformers.exporters.onnxruntime_fusions import fuse_for_onnxruntime

    meta = json.loads((source / EXPORT_MANIFEST).read_text(encoding="utf-8"))
    _say(0.0, 0.1, "reading the fp32 graph")
    model = ir.load(str(source / ONNX_FILE))
    before = Counter(node.op_type for node in model.graph.all_nodes())
    _say(0.1, 0.6, "fusing into ONNX Runtime's ops (rotary, skip RMS norm, packed q/k/v)")
    fuse_for_onnxruntime(model, "cpu")
    after = Counter(node.op_type for node in model.graph.all_nodes())
    if after.total() >= before.total():
        raise ExportError("transformers' ONNX Runtime fusions found nothing to fuse in this graph; "
                          "use the fp32 variant for this model.")
    _say(0.6, 0.75, "saving the fused graph")
    ir.save(model, str(out / ONNX_FILE), external_data=DATA_FILE)
    del model
    _say(0.75, 0.98, "checking the fused graph against torch")
    facts = _checked_facts(model_dir, meta, out, threads)
    fused = {op: n for op, n in after.items() if op not in before}
    return dict(facts, nodes_before=before.total(), nodes_after=after.total(), fused_ops=fused)


def _child_nbits(model_dir: Path, source: Path, gguf_path: Path, out: Path, threads: int, variant: str) -> dict:
    """The source graph with every weight the GGUF holds replaced by its own blocks
    (``MatMulNBits`` / ``GatherBlockQuantized``, see ``nbits``)."""
    import onnx

    from .gguf_blocks import read_gguf
    from .kernels import wide_codes_timing
    from .nbits import rewrite
    from .spec import ACCURACY_LEVELS

    meta = json.loads((source / EXPORT_MANIFEST).read_text(encoding="utf-8"))
    _say(0.0, 0.3, f"reading the blocks of {gguf_path.name} (each checked against gguf's de-quantization)")
    tensors, others = read_gguf(gguf_path)
    if not tensors:
        raise ExportError(f"{gguf_path.name} holds no tensor in a block format the q4 variants map "
                          f"(it has {sorted(set(others.values()))}); use the int8 variant.")
    _say(0.3, 0.4, f"reading the {meta['variant']} graph")
    model = onnx.load(str(source / ONNX_FILE))
    level = ACCURACY_LEVELS[variant]

    progress_at = [0.4]

    def step(f: float, message: str) -> None:
        progress_at[0] = 0.4 + 0.4 * f
        _say(progress_at[0], progress_at[0], message)

    mode = wide_codes_mode() or "measure"

    def wide_as_fp32(n: int, k: int, offsets: bool, block: int) -> dict:
        if mode == "fp32":
            return {"fp32": True, "fp32_ms": None, "halves_ms": None, "chosen_by": f"{WIDE_CODES_ENV}=fp32"}
        _say(progress_at[0], progress_at[0], f"timing a {n} x {k} weight with 5-8-bit codes: fp32 or two 4-bit halves")
        return wide_codes_timing(n, k, offsets, threads, block=block)

    report = rewrite(model, tensors, accuracy_level=level, progress=step,
                     wide_as_fp32=None if mode == "halves" else wide_as_fp32)
    if not any(w.tensors for w in report.weights):  # matched nothing (a weight kept fp32 by choice did match)
        raise ExportError(f"No weight of the graph equals a tensor of {gguf_path.name}: the GGUF is not the "
                          "file these weights were converted from. Reinstall the model.")
    _say(0.8, 0.85, "saving the graph")
    onnx.save(model, str(out / ONNX_FILE), save_as_external_data=True, location=DATA_FILE, size_threshold=1024)
    del model
    _say(0.85, 0.98, "checking the graph against torch")
    facts = _checked_facts(model_dir, meta, out, threads)
    return dict(facts, source_variant=meta["variant"], gguf=gguf_path.name, gguf_types_left=sorted(set(others.values())),
                wide_codes=mode, **report.to_json())


def _child_gqa(model_dir: Path, out: Path, threads: int) -> dict:
    """ONNX Runtime's own decode graph (onnxruntime-genai's model builder, fp32), rewritten to the
    workbench's interface (``genai_graph``), checked against torch."""
    import shutil

    import onnx
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from . import genai_graph

    torch.set_num_threads(threads)
    config = text_config(AutoConfig.from_pretrained(model_dir, local_files_only=True))
    layers, kv_heads, head_dim = _kv_shape(config)
    if head_dim % 16:
        from ..errors import UnsupportedModelError

        raise UnsupportedModelError(f"ONNX Runtime's GroupQueryAttention on the CPU needs a head size that is a "
                                    f"multiple of 16; this model's is {head_dim}. Use the fused variant.")
    _say(0.0, 0.5, "building ONNX Runtime's decode graph (onnxruntime-genai's model builder, fp32)")
    raw = out.parent / "genai-builder-out"
    genai_graph.build(model_dir, raw, "fp32")
    _say(0.5, 0.7, "giving it the workbench's interface (position ids, padding mask, last-position logits)")
    model = onnx.load(str(raw / "model.onnx"))
    gemma = getattr(config, "model_type", "").startswith("gemma")
    facts = genai_graph.to_workbench_interface(model, config.hidden_size if gemma else None)
    onnx.save(model, str(out / ONNX_FILE), save_as_external_data=True, location=DATA_FILE, size_threshold=1024)
    del model
    shutil.rmtree(raw, ignore_errors=True)
    _say(0.7, 0.98, "checking the graph against torch")
    module = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, use_safetensors=True, local_files_only=True).eval()
    vocab = module.get_output_embeddings().weight.shape[0]
    diff = _self_check(out / ONNX_FILE, module, layers, kv_heads, head_dim, vocab, threads)
    return dict(num_layers=layers, kv_heads=kv_heads, head_dim=head_dim, vocab_size=vocab,
                self_check_max_abs_diff=diff, **facts)


def _child_main(argv: list[str]) -> int:
    import argparse
    import warnings

    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(prog="python -m workbench.onnx.builder")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--model-id", required=True)
    parser.add_argument("--fingerprint", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--source", type=Path)
    parser.add_argument("--gguf", type=Path)
    parser.add_argument("--threads", type=int, default=cpu_count())
    args = parser.parse_args(argv)
    global _PROGRESS_OUT
    _PROGRESS_OUT = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # the exporter's own chatter (Python and C level) goes to the log, not the pipe
    sys.stdout = sys.stderr
    start = time.perf_counter()
    if args.variant == "fp32":
        facts = _child_fp32(args.model_dir, args.out, args.threads)
    elif args.variant == "fused":
        facts = _child_fused(args.model_dir, args.source, args.out, args.threads)
    elif args.variant == "int8":
        facts = _child_int8(args.model_dir, args.source, args.out, args.threads)
    elif args.variant == "gqa":
        facts = _child_gqa(args.model_dir, args.out, args.threads)
    else:
        facts = _child_nbits(args.model_dir, args.source, args.gguf, args.out, args.threads, args.variant)
    _say(0.98, 1.0, "hashing the files")
    manifest = dict(
        model_id=args.model_id,
        variant=args.variant,
        format=EXPORT_FORMAT,
        graph=GRAPHS[args.variant],
        versions=export_versions(args.variant),
        model_fingerprint=args.fingerprint,
        export_seconds=time.perf_counter() - start,
        threads=args.threads,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        inputs=["input_ids", "attention_mask", "position_ids"] + past_names(facts["num_layers"], "past_key_values"),
        outputs=["logits"] + past_names(facts["num_layers"], "present"),
        **facts,
        files=describe_files(args.out),
    )
    (args.out / EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
