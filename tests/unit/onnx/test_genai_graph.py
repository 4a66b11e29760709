"""The builder route (``gqa`` variants): ONNX Runtime's own decode graph from onnxruntime-genai's
model builder, given the workbench's interface, on tiny Llama and Gemma 3 models whose head size
is 16 (GroupQueryAttention on the CPU needs a multiple of 16; the shared tiny models have 8):
graph shape, parity with torch alone and in a left-padded batch the server's way, and the GGUF's
own blocks put in exactly."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime_genai")

from workbench.errors import UnsupportedModelError  # noqa: E402


def _build(kind: str, out: Path) -> Path:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM

    from workbench.testing.tiny_models import build_tokenizer

    torch.manual_seed(0)
    tok = build_tokenizer()
    common = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=128,
                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(num_key_value_heads=2, tie_word_embeddings=True, **common))
    else:  # sliding window 4: the cached steps below cross it
        model = Gemma3ForCausalLM(Gemma3TextConfig(
            num_key_value_heads=1, head_dim=16, sliding_window=4, pad_token_id=tok.bos_token_id,
            layer_types=["sliding_attention", "full_attention"], **common))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "proj" in name:
                p.mul_(4.0)  # peaked attention, so a wrong mask or position shows
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def head16_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("head16")
    return {kind: _build(kind, root / kind) for kind in ("llama", "gemma3")}


@pytest.fixture
def gqa_store(isolated_home, head16_dirs, tmp_path, monkeypatch):
    """head16 Llama and Gemma 3 from folders, and the Llama's GGUF twin as ``h16-gguf``."""
    from workbench.runtime import loading
    from workbench.store import Store, convert
    from workbench.testing.tiny_gguf import build_gguf_twin, hf_folder_converter

    store = Store(isolated_home)
    store.add("h16-llama", local_dir=head16_dirs["llama"])
    store.add("h16-gemma3", local_dir=head16_dirs["gemma3"])
    twin = tmp_path / "twin"
    shutil.copytree(head16_dirs["llama"], twin)
    gguf_path = build_gguf_twin(twin, tmp_path / "h16.gguf")
    monkeypatch.setattr(convert, "gguf_to_hf", hf_folder_converter(twin))
    store.add("h16-gguf", gguf=gguf_path, name="head16 GGUF Llama")
    store.twin = twin
    yield store
    loading.unload()


def _ops(path) -> dict[str, int]:
    import onnx
    from collections import Counter

    return dict(Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node))


@pytest.mark.parametrize("model_id", ["h16-llama", "h16-gemma3"])
def test_gqa_graph_matches_torch_alone_and_in_a_left_padded_batch(gqa_store, model_id):
    from workbench.latency.parity import check_parity
    from workbench.onnx import export_model
    from workbench.onnx.spec import EXPORT_MANIFEST
    from workbench.runtime.backends import make_backend
    from workbench.runtime.loading import load_model

    store = gqa_store
    export = export_model(store, model_id, "gqa")
    manifest = json.loads((export.directory / EXPORT_MANIFEST).read_text())
    assert manifest["graph"] == export.graph == "ort-genai-builder"
    assert "onnxruntime-genai" in manifest["versions"]
    ops = _ops(export.onnx_path)
    assert ops["GroupQueryAttention"] == 2 and ops["RotaryEmbedding"] == 4  # q and k of each layer
    assert ops["SkipSimplifiedLayerNormalization"] >= 2
    assert export.self_check_max_abs_diff < 1e-4

    model = load_model(model_id, store=store)
    backend = make_backend(model, "onnxruntime-gqa", store=store)
    report = check_parity(model, backend, "The capital of France is", steps=12)
    assert report.passed and report.greedy_match == report.greedy_total, report.verdict

    # the server's path: two prompts left-padded into one forward pass, then cached steps
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12, 13]]
    width = max(map(len, prompts))
    ids = np.array([[0] * (width - len(p)) + p for p in prompts], np.int64)
    mask = np.array([[0] * (width - len(p)) + [1] * len(p) for p in prompts], np.int64)
    pos = np.clip(mask.cumsum(1) - 1, 0, None)
    logits, past = backend.forward(ids, mask, pos, backend.empty_cache(2))
    seqs = [list(p) for p in prompts]
    for step in range(6):  # crosses Gemma's window of 4
        for row, seq in enumerate(seqs):
            with torch.no_grad():
                ref = model.module(torch.tensor([seq])).logits[0, -1]
            assert (logits[row] - ref).abs().max().item() < 1e-4, (step, row)
        nxt = [int(logits[row].argmax()) for row in range(2)]
        for row, seq in enumerate(seqs):
            seq.append(nxt[row])
        mask = np.concatenate([mask, np.ones((2, 1), np.int64)], 1)
        pos = pos[:, -1:] + 1
        logits, past = backend.forward(np.array(nxt, np.int64)[:, None], mask, pos, past)


def test_a_cache_padded_on_the_left_later_still_matches(gqa_store):
    """The server pads a joining group's cache on the left: keys must carry their own positions
    (rotated outside GroupQueryAttention), not their cache slots."""
    from workbench.runtime.backends import make_backend
    from workbench.runtime.loading import load_model

    model = load_model("h16-llama", store=gqa_store)
    backend = make_backend(model, "onnxruntime-gqa", store=gqa_store)
    prompt = [11, 12, 13]
    logits, past = backend.forward(np.array([prompt], np.int64), np.ones((1, 3), np.int64),
                                   np.arange(3, dtype=np.int64)[None], backend.empty_cache(1))
    arrays = [np.pad(a, ((0, 0), (0, 0), (4, 0), (0, 0))) for a in backend.cache_arrays(past)]
    mask = np.array([[0] * 4 + [1] * 4], np.int64)
    out, _ = backend.forward(np.array([[14]], np.int64), mask, np.array([[3]], np.int64),
                             backend.cache_from_arrays(arrays))
    with torch.no_grad():
        ref = model.module(torch.tensor([prompt + [14]])).logits[0, -1]
    assert (out[0] - ref).abs().max().item() < 1e-4


def _effective_weights(path) -> dict[str, np.ndarray]:
    """Every MatMulNBits node's weight (N, K) in float64, rebuilt from its constants: codes minus
    zero points times scales, plus the block offsets of its correction, two 4-bit halves summed."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    offset_of = {n.name[: -len("/offset")]: n.input[1] for n in model.graph.node if n.name.endswith("/offset")}
    out = {}
    for node in model.graph.node:
        if node.op_type != "MatMulNBits":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        n, k2, bits, block = attrs["N"], attrs["K"], attrs["bits"], attrs["block_size"]
        b = inits[node.input[1]].reshape(n, k2 // block, -1)
        q = np.stack([b & 15, b >> 4], -1).reshape(n, k2 // block, block) if bits == 4 else b
        if len(node.input) > 3 and node.input[3]:
            zp = inits[node.input[3]]
            zp = np.stack([zp & 15, zp >> 4], -1).reshape(n, -1)[:, : k2 // block] if bits == 4 else zp
        else:
            zp = np.full((n, k2 // block), 2 ** (bits - 1))
        scales = inits[node.input[2]].reshape(n, k2 // block).astype(np.float64)
        w = ((q.astype(np.float64) - zp[..., None]) * scales[..., None]).reshape(n, k2)
        split = node.input[0].endswith("/x2")
        if split:
            w = w[:, : k2 // 2] + w[:, k2 // 2:]
        offsets = inits.get(offset_of.get(node.name, ""))
        if offsets is not None:
            k = w.shape[1]
            w = (w.reshape(n, k // block, block) + offsets.T.astype(np.float64)[..., None]).reshape(n, k)
        out[node.name] = w
    return out


def test_gqa_q4_puts_the_ggufs_own_blocks_in_exactly(gqa_store, monkeypatch):
    from safetensors.numpy import load_file

    from workbench.latency.parity import check_parity
    from workbench.onnx import export_model
    from workbench.onnx.spec import EXPORT_MANIFEST, WIDE_CODES_ENV
    from workbench.runtime.backends import make_backend
    from workbench.runtime.loading import load_model

    store = gqa_store
    monkeypatch.setenv(WIDE_CODES_ENV, "halves")  # every weight in blocks, 5-8-bit codes as two 4-bit halves
    q4 = export_model(store, "h16-gguf", "gqa_q4")
    manifest = json.loads((q4.directory / EXPORT_MANIFEST).read_text())
    assert manifest["graph"] == "ort-genai-builder" and manifest["source_variant"] == "gqa"
    assert manifest["fp32_left"] == [] and manifest["unused_gguf"] == []
    hf = {k: v.astype(np.float64) for k, v in load_file(str(store.twin / "model.safetensors")).items()}
    wanted = {name: w for name, w in hf.items() if w.ndim == 2}
    for layer in range(2):  # the packed q/k/v: the three tensors' blocks stacked along N
        parts = [hf[f"model.layers.{layer}.self_attn.{x}_proj.weight"] for x in "qkv"]
        wanted[f"qkv{layer}"] = np.concatenate(parts)
    found = set()
    for name, w in _effective_weights(q4.onnx_path).items():
        hits = [key for key, ref in wanted.items() if ref.shape == w.shape and np.array_equal(ref, w)]
        assert hits, f"{name} does not de-quantize to any weight of the model"
        found.update(hits)
    assert {"qkv0", "qkv1", "model.embed_tokens.weight"} <= found  # packed q/k/v and the tied LM head
    ops = _ops(q4.onnx_path)
    assert ops.get("MatMul", 0) <= 2 * 2 * 8  # only block-offset corrections remain fp32
    # the builder's embedding gathers from a Transpose of the LM head's weight: it becomes the
    # GGUF's own embedding blocks, and the fp32 table leaves the file
    assert ops.get("GatherBlockQuantized") == 1 and "Transpose" not in ops
    assert any(row["onnx_form"].startswith("GatherBlockQuantized") for row in manifest["mapping"])

    model = load_model("h16-gguf", store=store)
    report = check_parity(model, make_backend(model, "onnxruntime-gqa-q4", store=store),
                          "The capital of France is", steps=12)
    assert report.variant == "gqa_q4" and report.passed and report.greedy_match == report.greedy_total, report.verdict
    drift = check_parity(model, make_backend(model, "onnxruntime-gqa-q4a8", store=store),
                         "The capital of France is", steps=12)
    assert drift.variant == "gqa_q4a8" and not drift.threshold.judge_logits  # int8 activations: judged on tokens
    assert drift.max_abs_diff > 0  # and their drift reported


def test_a_head_size_gqa_cannot_take_is_refused_with_the_fix(tiny_store):
    from workbench.errors import ExportError
    from workbench.onnx import export_model

    with pytest.raises((UnsupportedModelError, ExportError), match="multiple of 16.*fused"):
        export_model(tiny_store, "tiny-llama", "gqa")  # head size 8
    assert not list(tiny_store.staging_dir.iterdir())


def test_bytes_per_token_leave_out_what_a_step_reads_a_row_of(tmp_path):
    """An embedding (directly or through a Transpose of the LM head's weight) and rotary cos/sin
    caches are read a row a position; a MatMul's weight is read whole."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from workbench.onnx.spec import weight_bytes_per_token

    f = np.float32
    inits = [numpy_helper.from_array(np.ones((8, 16), f), "lm_head"),  # (hidden, vocab): MatMul and Transpose
             numpy_helper.from_array(np.ones((64, 2), f), "cos_cache"), numpy_helper.from_array(np.ones((64, 2), f), "sin_cache"),
             numpy_helper.from_array(np.ones((8, 8), f), "w")]
    nodes = [helper.make_node("Transpose", ["lm_head"], ["table"], perm=[1, 0]),
             helper.make_node("Gather", ["table", "ids"], ["x"]),
             helper.make_node("RotaryEmbedding", ["x", "pos", "cos_cache", "sin_cache"], ["r"], domain="com.microsoft"),
             helper.make_node("MatMul", ["r", "w"], ["h"]),
             helper.make_node("MatMul", ["h", "lm_head"], ["logits"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 1]),
                                           helper.make_tensor_value_info("pos", TensorProto.INT64, [1, 1])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, 16])], inits)
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert weight_bytes_per_token(path) == (8 * 16 + 8 * 8) * 4  # the head (a MatMul reads it) and w
    nodes[-1] = helper.make_node("MatMul", ["h", "w"], ["logits"])  # an untied head: the table is only gathered
    graph = helper.make_graph(nodes, "g", graph.input, graph.output, inits)
    onnx.save(helper.make_model(graph), str(path))
    assert weight_bytes_per_token(path) == 8 * 8 * 4
