"""The KV-cache ONNX export on tiny models: interface, numbers, caching, damage and failure."""
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from workbench.testing.exports import seed_export
from workbench.onnx import spec as onnx_export
from workbench.errors import ExportError
from workbench.runtime.loading import load_model
from workbench.onnx.cache import cached_export, check_export, export_dir, export_model


def _session(export):
    return ort.InferenceSession(str(export.onnx_path), providers=["CPUExecutionProvider"])


def test_graph_has_kv_cache_inputs_and_outputs_with_named_dynamic_dims(tiny_store):
    export = seed_export(tiny_store, "tiny-llama")
    sess = _session(export)
    inputs = {i.name: i.shape for i in sess.get_inputs()}
    outputs = {o.name: o.shape for o in sess.get_outputs()}
    assert list(inputs)[:3] == ["input_ids", "attention_mask", "position_ids"]
    assert inputs["input_ids"] == ["batch", "sequence"]
    assert inputs["attention_mask"] == ["batch", "total_sequence"]
    assert inputs["past_key_values.1.value"] == ["batch", 2, "past_sequence", 8]
    assert outputs["present.0.key"] == ["batch", 2, "total_sequence", 8]
    assert outputs["logits"] == ["batch", 1, export.vocab_size]  # last position only
    assert set(inputs) == set(export.input_names) and list(outputs) == export.output_names
    assert export.self_check_max_abs_diff < 1e-4


def test_left_padded_batch_matches_torch_row_by_row(tiny_store):
    """Dynamic batch with the attention mask kept: two prompts of different lengths, left-padded."""
    export = seed_export(tiny_store, "tiny-llama")
    model = load_model("tiny-llama", store=tiny_store, device="cpu")
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12, 13]]
    width = max(map(len, prompts))
    ids = np.array([[0] * (width - len(p)) + p for p in prompts], np.int64)  # (2, 6)
    mask = np.array([[0] * (width - len(p)) + [1] * len(p) for p in prompts], np.int64)
    pos = np.clip(mask.cumsum(1) - 1, 0, None)
    feed = {"input_ids": ids, "attention_mask": mask, "position_ids": pos}
    for name in export.input_names[3:]:
        feed[name] = np.zeros((2, export.kv_heads, 0, export.head_dim), np.float32)
    logits = _session(export).run(["logits"], feed)[0]  # (2, 1, V)
    for row, prompt in enumerate(prompts):
        with torch.no_grad():
            ref = model.module(torch.tensor([prompt])).logits[0, -1].numpy()
        assert np.abs(logits[row, 0] - ref).max() < 1e-4


@pytest.mark.parametrize("variant", ["fp32", "fused"])
@pytest.mark.parametrize("model_id", ["tiny-gpt2", "tiny-llama", "tiny-gemma3"])
def test_cached_decode_matches_torch_for_each_architecture(tiny_store, model_id, variant):
    """Prefill then ten cached single-token steps, against torch on the whole sequence each time.
    Gemma 3's tiny config has a sliding window of 4, so the steps cross it."""
    export = seed_export(tiny_store, model_id, variant)
    model = load_model(model_id, store=tiny_store, device="cpu")
    sess = _session(export)
    seq = [3, 14, 15, 92, 65]
    feed = {"input_ids": np.array([seq]), "attention_mask": np.ones((1, len(seq)), np.int64),
            "position_ids": np.arange(len(seq))[None]}
    for name in export.input_names[3:]:
        feed[name] = np.zeros((1, export.kv_heads, 0, export.head_dim), np.float32)
    worst = 0.0
    for step in range(10):
        outs = sess.run(None, feed)
        with torch.no_grad():
            ref = model.module(torch.tensor([seq])).logits[0, -1].numpy()
        worst = max(worst, float(np.abs(outs[0][0, -1] - ref).max()))
        token = int(np.argmax(outs[0][0, -1]))
        assert token == int(np.argmax(ref))
        seq.append(token)
        feed = {"input_ids": np.array([[token]]), "attention_mask": np.ones((1, len(seq)), np.int64),
                "position_ids": np.array([[len(seq) - 1]])}
        feed.update(zip(export.input_names[3:], outs[1:]))
        assert outs[1].shape[2] == len(seq) - 1  # the cache grows by one per call
    assert worst < 1e-4


def test_export_is_cached_and_reused(tiny_store):
    first = seed_export(tiny_store, "tiny-gpt2")  # made by export_model in the session's seed store
    data = first.directory / onnx_export.DATA_FILE
    stamp = data.stat().st_mtime_ns
    messages = []
    again = export_model(tiny_store, "tiny-gpt2", progress=lambda f, m: messages.append(m))
    assert again.directory == first.directory == export_dir(tiny_store, "tiny-gpt2")
    assert data.stat().st_mtime_ns == stamp
    assert messages == [f"cached export: {first.directory}"]
    manifest = json.loads((first.directory / onnx_export.EXPORT_MANIFEST).read_text())
    assert manifest["versions"]["onnxruntime"] == ort.__version__
    assert first.directory.name.startswith("fp32-v")
    assert list(tiny_store.staging_dir.iterdir()) == []


def test_corrupt_cached_export_is_detected_and_exported_again(tiny_store):
    export = seed_export(tiny_store, "tiny-gpt2")
    data = export.directory / onnx_export.DATA_FILE
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size, one byte flipped: only the hash can tell
    data.write_bytes(bytes(raw))
    assert "sha256" in check_export(export.directory)
    assert cached_export(tiny_store, "tiny-gpt2") is None
    messages = []
    again = export_model(tiny_store, "tiny-gpt2", progress=lambda f, m: messages.append(m))
    assert any("unusable" in m and "sha256" in m for m in messages)
    assert check_export(again.directory) == ""
    assert again.directory == export.directory
    (again.directory / onnx_export.DATA_FILE).unlink()
    assert "missing" in check_export(again.directory, full=False)


def test_failed_export_leaves_nothing_and_says_why(tiny_store):
    weights = tiny_store.path("tiny-llama") / "model.safetensors"
    size = weights.stat().st_size
    weights.write_bytes(b"\0" * size)  # same size: the store's quick check passes, loading fails
    with pytest.raises(ExportError, match="Exporting to ONNX failed.*Nothing was kept"):
        export_model(tiny_store, "tiny-llama")
    assert not (tiny_store.exports_dir / "tiny-llama").exists() or not any((tiny_store.exports_dir / "tiny-llama").iterdir())
    assert list(tiny_store.staging_dir.iterdir()) == []


def test_interrupted_export_stops_the_child_and_leaves_nothing(tiny_store):
    with pytest.raises(ExportError, match="longer than 1 s.*nothing was kept"):
        export_model(tiny_store, "tiny-gemma3", timeout_s=1)
    assert cached_export(tiny_store, "tiny-gemma3") is None
    assert list(tiny_store.staging_dir.iterdir()) == []


def test_staging_of_a_dead_exporter_is_swept(tiny_store):
    leftover = tiny_store.staging_dir / "export-tiny-llama-999999999-abc"
    (leftover / "out").mkdir(parents=True)
    from workbench.store import Store

    Store(tiny_store.home)
    assert not leftover.exists()


def test_int8_quantizes_the_tied_lm_head(tiny_store):
    export = seed_export(tiny_store, "tiny-llama", "int8")
    fp32 = cached_export(tiny_store, "tiny-llama", "fp32")
    proto = onnx.load(str(export.onnx_path))
    vocab, hidden = export.vocab_size, 32
    big_float = [i.name for i in proto.graph.initializer
                 if i.data_type == onnx.TensorProto.FLOAT and np.prod(i.dims) == vocab * hidden]
    quantized = [tuple(i.dims) for i in proto.graph.initializer
                 if i.data_type in (onnx.TensorProto.UINT8, onnx.TensorProto.INT8) and np.prod(i.dims) == vocab * hidden]
    assert len(big_float) == 1  # the embedding table the Gather reads
    assert quantized == [(hidden, vocab)]  # the LM head, transposed by constant folding, in 8 bits
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in proto.graph.node)
    assert export.size_bytes < fp32.size_bytes
    assert export.variant == "int8" and export.directory.name.startswith("int8-")


@pytest.mark.parametrize("model_id, fused", [
    ("tiny-llama", {"RotaryEmbedding": 4, "SkipSimplifiedLayerNormalization": 4}),
    ("tiny-gemma3", {"RotaryEmbedding": 4, "SkipSimplifiedLayerNormalization": 4}),
    ("tiny-gpt2", {"SkipLayerNormalization": 5}),
])
def test_fused_variant_uses_onnxruntime_ops_and_keeps_the_interface(tiny_store, model_id, fused):
    export = seed_export(tiny_store, model_id, "fused")
    fp32 = cached_export(tiny_store, model_id, "fp32")
    proto, plain = onnx.load(str(export.onnx_path)), onnx.load(str(fp32.onnx_path), load_external_data=False)
    ops = {}
    for node in proto.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + (node.domain == "com.microsoft")
    assert {op: ops.get(op) for op in fused} == fused  # one per layer (gpt2: also the final norm)
    assert len(proto.graph.node) < len(plain.graph.node)
    sess, plain_sess = _session(export), _session(fp32)
    assert [(i.name, i.shape) for i in sess.get_inputs()] == [(i.name, i.shape) for i in plain_sess.get_inputs()]
    assert [o.name for o in sess.get_outputs()] == export.output_names
    manifest = json.loads((export.directory / onnx_export.EXPORT_MANIFEST).read_text())
    assert manifest["nodes_after"] == len(proto.graph.node) < manifest["nodes_before"]
    assert export.directory.name.startswith("fused-v") and export.self_check_max_abs_diff < 1e-5


def test_unknown_variant_lists_the_choices(tiny_store):
    with pytest.raises(ExportError, match="fp32, fused, int8"):
        export_model(tiny_store, "tiny-llama", "int4")


def test_export_of_a_model_that_is_not_installed_says_so(tiny_store):
    from workbench.errors import ModelNotInstalledError

    tiny_store.remove("tiny-llama")
    with pytest.raises(ModelNotInstalledError, match="not installed"):
        export_model(tiny_store, "tiny-llama")


def test_reinstalled_weights_invalidate_the_export(tiny_store):
    seed_export(tiny_store, "tiny-gpt2")
    manifest = tiny_store.path("tiny-gpt2") / "manifest.json"
    data = json.loads(manifest.read_text())
    name = next(iter(data["files"]))
    data["files"][name]["sha256"] = "0" * 64  # as if other weights were installed
    manifest.write_text(json.dumps(data))
    assert cached_export(tiny_store, "tiny-gpt2") is None
    assert os.path.isdir(export_dir(tiny_store, "tiny-gpt2"))


def test_an_export_made_with_other_library_versions_is_dropped(tiny_store):
    from workbench.onnx import cache

    old = tiny_store.export_root("tiny-gpt2") / "fp32-0000000000000000"  # another versions key
    old.mkdir(parents=True)
    (old / "model.onnx").write_bytes(b"old")
    made = cache.export_model(tiny_store, "tiny-gpt2", "fp32", force=True)
    assert made.directory.is_dir() and not old.exists()
    assert list(tiny_store.staging_dir.iterdir()) == []
