"""ONNX Runtime's own decode graph, made by onnxruntime-genai's model builder and given the
workbench's interface.

The builder (``onnxruntime_genai.models.builder``, the ``bench`` extra) writes about eleven nodes
a layer: ``SkipSimplifiedLayerNormalization``, one packed q/k/v ``MatMul``,
``GroupQueryAttention`` (GQA) with rotary inside and past/present KV, o-proj, gate/up, down. Its
graph takes ``input_ids``, ``attention_mask`` and ``past_key_values.N.key/value`` and returns
the logits of every position; GQA reads each row's length from the mask and assumes the valid
tokens come first (right padding). ``to_workbench_interface`` rewrites it, in place, to the
interface of every other variant (``workbench.onnx.cache``):

- a ``position_ids`` input, read by a ``RotaryEmbedding`` node on q and one on k before each GQA
  node (GQA's own rotary switched off, the packed q/k/v split for them), so the keys in
  ``present`` are rotated by the caller's positions as in the other variants, and the server may
  pad or cut cache columns. (GQA's own rotary cannot do this on ORT 1.32: given ``position_ids``
  it still stores the first prompt's keys rotated by cache slot.)
- every row declared full (``seqlens_k = total - 1``) and the padding masked by an additive
  ``attention_bias`` (GQA's input 10, ``-1e9`` where ``attention_mask`` is 0: finite, so a row of
  padding only gets meaningless but finite values), so left-padded batches compute what torch
  computes with the same mask;
- logits of the last position only (a ``Slice`` before the LM head);
- Gemma 3: the embedding scale exactly ``sqrt(hidden)`` in fp32 (the builder rounds it to two
  decimals) and full-length caches on sliding layers (the builder's ``sliding_window_cache``
  keeps window-sized buffers the server's cache handling does not know; the window is still
  applied by ``local_window_size``).

``build`` runs the builder in this process (call it in the export child). transformers 5 saves
Gemma 3's rope parameters per layer type, which onnxruntime-genai 0.18 cannot read
(``KeyError: 'rope_type'``); ``build`` reads them for it (default rope only). Nothing here
re-quantizes: the q4 variants put the GGUF's own blocks into this graph with ``nbits.rewrite``.
"""
from __future__ import annotations

import contextlib
import importlib
import json
from pathlib import Path

import numpy as np

from ..errors import ExportError, UnsupportedModelError
from .graph_tools import drop_unused

GRAPH_NAME = "ort-genai-builder"  # export.json's "graph" for variants made from this graph
BUILDER_ARCHITECTURES = ("LlamaForCausalLM", "Gemma3ForCausalLM", "Gemma3ForConditionalGeneration")
PAD_BIAS = -1e9
MS_DOMAIN = "com.microsoft"


def builder_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime_genai") is not None


def supports(config: dict) -> bool:
    """Whether a model's ``config.json`` (a dict) names an architecture this route builds."""
    return any(a in BUILDER_ARCHITECTURES for a in config.get("architectures") or ())


@contextlib.contextmanager
def _nested_rope_read():
    """Let the builder read rope parameters saved per layer type (``{"full_attention": {...},
    "sliding_attention": {...}}``), as transformers 5 saves Gemma 3's: full layers' theta as the
    model's, sliding layers' as ``rope_local_base_freq`` (what Gemma3Model reads)."""
    import onnxruntime_genai.models.builder as gb

    base = importlib.import_module(gb.Gemma3Model.__mro__[-2].__module__)  # the builder's own ``builders.base``
    original = base.Model.make_rope_init

    def make_rope_init(self, config):
        rope = getattr(config, "rope_parameters", None)
        if isinstance(rope, dict) and "rope_type" not in rope and "full_attention" in rope:
            full, local = rope["full_attention"], rope.get("sliding_attention", rope["full_attention"])
            if {full.get("rope_type", "default"), local.get("rope_type", "default")} != {"default"}:
                raise UnsupportedModelError(
                    f"onnxruntime-genai's builder route reads only default rope here, this model has "
                    f"{full.get('rope_type')} / {local.get('rope_type')}; use the fused variant.")
            self.rope_attrs["theta"] = full["rope_theta"]
            config.rope_local_base_freq = local["rope_theta"]
            return None
        return original(self, config)

    base.Model.make_rope_init = make_rope_init
    try:
        yield
    finally:
        base.Model.make_rope_init = original


def build(model_dir: Path, out: Path, precision: str = "fp32", extra: str = "") -> Path:
    """Run onnxruntime-genai's model builder on a saved Hugging Face folder into ``out`` (its
    ``model.onnx``, ``model.onnx.data``, ``genai_config.json`` and tokenizer files); returns
    ``out / "model.onnx"``. ``precision`` is the builder's (fp32, int4, ...); ``extra`` its
    ``--extra_options`` (KEY=VALUE pairs, space-separated). Raises ``UnsupportedModelError`` for an architecture it does not build."""
    if not builder_installed():
        raise UnsupportedModelError("onnxruntime-genai is not installed: `pip install -e '.[bench]'` "
                                    "(onnxruntime-genai==0.18.0) adds the builder route.")
    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    if not supports(config):
        raise UnsupportedModelError(
            f"The builder route covers {', '.join(BUILDER_ARCHITECTURES)}, not {config.get('architectures')}; "
            "use the fused variant.")
    import onnxruntime_genai.models.builder as gb

    out = Path(out)
    cache = out.parent / f"{out.name}-builder-cache"
    with _nested_rope_read():
        options = gb.parse_extra_options(None, str(model_dir), str(out), precision, "cpu", str(cache), extra.split())  # a list of KEY=VALUE
        gb.create_model(None, str(model_dir), str(out), precision, "cpu", str(cache), **options)
    import shutil

    shutil.rmtree(cache, ignore_errors=True)
    path = out / "model.onnx"
    if not path.is_file():
        raise ExportError(f"onnxruntime-genai's builder wrote no model.onnx into {out}.")
    return path


def _const(graph, name: str, array: np.ndarray) -> str:
    from onnx import numpy_helper

    graph.initializer.append(numpy_helper.from_array(np.asarray(array), name))
    return name


def to_workbench_interface(model, hidden_size: int | None = None) -> dict:
    """Rewrite the builder's graph (an onnx ModelProto) in place to the workbench's interface
    (see the module docstring). ``hidden_size`` sets Gemma's embedding scale exactly. Returns
    facts for ``export.json`` (GQA nodes, layers). Raises ``ExportError`` if the graph is not
    shaped as expected (another builder version)."""
    from onnx import TensorProto, helper

    graph = model.graph
    gqa = [n for n in graph.node if n.op_type == "GroupQueryAttention"]
    lm = [n for n in graph.node if "logits" in n.output]
    if not gqa or len(lm) != 1 or "attention_mask" not in {i.name for i in graph.input}:
        raise ExportError("onnxruntime-genai's builder graph has no GroupQueryAttention, or not one node making "
                          "logits: this builder version is not the one the route was written for (0.18.0).")
    p = "/workbench_interface"
    position = helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch_size", "sequence_length"])
    inputs = {i.name: i for i in graph.input}
    del graph.input[:]  # the workbench's order: ids, mask, positions, then each layer's key and value
    graph.input.extend([inputs["input_ids"], inputs["attention_mask"], position]
                       + sorted((i for n, i in inputs.items() if n.startswith("past_key_values.")), key=_kv_order))
    outputs = {o.name: o for o in graph.output}
    del graph.output[:]
    graph.output.extend([outputs["logits"]]
                        + sorted((o for n, o in outputs.items() if n.startswith("present.")), key=_kv_order))
    one, zero = _const(graph, f"{p}/one", np.array([1], np.int64)), _const(graph, f"{p}/zero", np.array([0], np.int64))
    nodes = [
        helper.make_node("Shape", ["attention_mask"], [f"{p}/mask_shape"]),
        helper.make_node("Gather", [f"{p}/mask_shape", zero], [f"{p}/batch"], axis=0),  # (1,)
        helper.make_node("Gather", [f"{p}/mask_shape", one], [f"{p}/total"], axis=0),  # (1,)
        helper.make_node("Sub", [f"{p}/total", one], [f"{p}/last"]),
        helper.make_node("Expand", [f"{p}/last", f"{p}/batch"], [f"{p}/seqlens_k64"]),  # (B,)
        helper.make_node("Cast", [f"{p}/seqlens_k64"], [f"{p}/seqlens_k"], to=TensorProto.INT32),
        helper.make_node("Cast", [f"{p}/total"], [f"{p}/total_i32_1"], to=TensorProto.INT32),
        helper.make_node("Squeeze", [f"{p}/total_i32_1", zero], [f"{p}/total_sequence_length"]),  # scalar
        # additive bias (B, 1, S, T): 0 where attended, PAD_BIAS on padding
        helper.make_node("Cast", ["attention_mask"], [f"{p}/mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Sub", [f"{p}/mask_f", _const(graph, f"{p}/one_f", np.array(1, np.float32))], [f"{p}/neg"]),
        helper.make_node("Mul", [f"{p}/neg", _const(graph, f"{p}/pad", np.array(-PAD_BIAS, np.float32))], [f"{p}/bias_bt"]),
        helper.make_node("Unsqueeze", [f"{p}/bias_bt", _const(graph, f"{p}/axes12", np.array([1, 2], np.int64))],
                         [f"{p}/bias_b11t"]),
        helper.make_node("Shape", ["input_ids"], [f"{p}/ids_shape"]),
        helper.make_node("Gather", [f"{p}/ids_shape", one], [f"{p}/seq"], axis=0),
        helper.make_node("Concat", [f"{p}/batch", one, f"{p}/seq", f"{p}/total"], [f"{p}/bias_shape"], axis=0),
        helper.make_node("Expand", [f"{p}/bias_b11t", f"{p}/bias_shape"], [f"{p}/attention_bias"]),
    ]
    attrs_of = {n.name: {a.name: a for a in n.attribute} for n in gqa}
    rotated = []
    for node in gqa:
        attrs = attrs_of[node.name]
        args = list(node.input) + [""] * (12 - len(node.input))
        q_heads, kv_heads = attrs["num_heads"].i, attrs["kv_num_heads"].i
        q, k, v = args[0], args[1], args[2]
        if not k:  # packed q/k/v (B, S, (Hq + 2 Hkv) D): split it for the rotary nodes
            if not args[7]:
                raise ExportError(f"{node.name} packs q/k/v without rotary caches; not a graph this route knows.")
            d = _head_size(graph, args[7])
            sizes = _const(graph, f"{p}/{node.name}/sizes", np.array([q_heads * d, kv_heads * d, kv_heads * d], np.int64))
            q, k, v = (f"{p}/{node.name}/{x}" for x in "qkv")
            rotated.append((node, helper.make_node("Split", [args[0], sizes], [q, k, v], axis=-1)))
        if attrs.get("do_rotary") is not None and attrs["do_rotary"].i:
            interleaved = attrs["rotary_interleaved"].i if "rotary_interleaved" in attrs else 0
            for label, name, heads in (("q", q, q_heads), ("k", k, kv_heads)):
                out = f"{p}/{node.name}/{label}_rotary"
                rotated.append((node, helper.make_node(
                    "RotaryEmbedding", [name, "position_ids", args[7], args[8]], [out], domain=MS_DOMAIN,
                    interleaved=interleaved, num_heads=heads)))
                if label == "q":
                    q = out
                else:
                    k = out
        args[0], args[1], args[2] = q, k, v
        args[5], args[6] = f"{p}/seqlens_k", f"{p}/total_sequence_length"
        args[7], args[8], args[9], args[10] = "", "", "", f"{p}/attention_bias"
        del node.input[:]
        node.input.extend(args[:11])
        keep = [a for a in node.attribute if a.name not in ("sliding_window_cache", "do_rotary", "rotary_interleaved")]
        del node.attribute[:]
        node.attribute.extend(keep + [helper.make_attribute("do_rotary", 0)])
    head = lm[0]
    last = helper.make_node("Slice", [head.input[0], _const(graph, f"{p}/minus1", np.array([-1], np.int64)),
                                      _const(graph, f"{p}/big", np.array([2**62], np.int64)), one],
                            [f"{p}/last_hidden"])  # (B, 1, hidden)
    head.input[0] = f"{p}/last_hidden"
    for out in graph.output:
        if out.name == "logits":
            out.type.tensor_type.shape.dim[1].dim_value = 1
    if hidden_size:
        _exact_embed_scale(graph, hidden_size)
    before = {}
    for node, extra in rotated:
        before.setdefault(id(node), []).append(extra)
    before[id(head)] = [last]
    ordered = list(nodes)
    for node in graph.node:
        ordered += before.get(id(node), []) + [node]
    del graph.node[:]
    graph.node.extend(ordered)
    drop_unused(graph)
    return {"gqa_nodes": len(gqa), "nodes": len(graph.node)}


def _kv_order(value) -> tuple[int, int]:
    """``past_key_values.3.value`` -> (3, 1): layer, then key before value."""
    parts = value.name.split(".")
    return int(parts[-2]), parts[-1] == "value"


def _head_size(graph, cos_cache: str) -> int:
    """Head size from a rotary cache initializer (max positions, head_size / 2)."""
    init = next((i for i in graph.initializer if i.name == cos_cache), None)
    if init is None or len(init.dims) != 2:
        raise ExportError(f"The rotary cache {cos_cache} is not a 2-D initializer; not a graph this route knows.")
    return 2 * int(init.dims[1])


def _exact_embed_scale(graph, hidden_size: int) -> None:
    """Gemma scales embeddings by sqrt(hidden); the builder rounds it to 2 decimals."""
    from onnx import numpy_helper

    exact = np.array(np.sqrt(hidden_size), np.float32)
    for node in graph.node:
        if node.op_type == "Constant" and node.name.startswith("/model/constant_nodes/FLOAT/"):
            users = [n for n in graph.node if node.output[0] in n.input]
            if users and all(u.name.startswith("/model/embed_tokens/Mul") for u in users):
                node.attribute[0].t.CopyFrom(numpy_helper.from_array(exact.astype(np.float32)))
