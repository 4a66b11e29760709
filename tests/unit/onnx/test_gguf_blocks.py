"""GGUF blocks read as ONNX Runtime's block forms: every supported type reproduces gguf's own
de-quantization, splits into exact 4-bit halves, and runs exactly in a one-node ``MatMulNBits``."""
from __future__ import annotations

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from workbench.onnx.gguf_blocks import FORMS, check_against_gguf, parse_tensor, read_gguf, split_nibbles  # noqa: E402


def random_blocks(kind: str, rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """Random block bytes of ``kind`` with sane fp16 scales (random bytes elsewhere)."""
    rng = np.random.default_rng(seed)
    weights, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[kind]]
    raw = rng.integers(0, 256, size=(rows * cols // weights, size), dtype=np.uint8)
    n = raw.shape[0]

    def f16(lo, hi):
        return rng.uniform(lo, hi, n).astype(np.float16).view(np.uint8).reshape(n, 2)

    if kind == "Q6_K":
        raw[:, 208:210] = f16(0.001, 0.1)
    else:
        raw[:, 0:2] = f16(0.001, 0.1)
        if kind in ("Q4_1", "Q5_1", "Q4_K"):
            raw[:, 2:4] = f16(-0.1, 0.1) if kind != "Q4_K" else f16(0.001, 0.1)
    return raw


@pytest.mark.parametrize("kind", sorted(FORMS))
def test_every_block_type_reads_as_gguf_dequantizes_it(kind):
    rows, cols = 6, 512
    raw = random_blocks(kind, rows, cols)
    tensor = parse_tensor("w", kind, raw, rows, cols)
    reference = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[kind]).reshape(rows, cols)
    assert check_against_gguf(tensor, reference) <= 0.5  # at most the rounding of gguf's own fp32 code
    halves = split_nibbles(tensor)
    assert all(h.bits == 4 and h.q.max() <= 15 for h in halves)
    assert np.array_equal(sum(h.dequantized() for h in halves), tensor.dequantized())  # exact, not close


def test_a_broken_reader_would_be_caught():
    raw = random_blocks("Q4_1", 2, 64)
    tensor = parse_tensor("w", "Q4_1", raw, 2, 64)
    reference = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType.Q4_1).reshape(2, 64)
    tensor.q[0, 0] ^= 1  # one code off by one step
    assert check_against_gguf(tensor, reference) > 1


@pytest.mark.parametrize("accuracy", [0, 4])
@pytest.mark.parametrize("kind", ["Q4_0", "Q4_1", "Q8_0", "Q5_0", "Q4_K", "Q6_K"])
def test_one_matmul_nbits_node_computes_with_the_gguf_weights(kind, accuracy):
    """The rewrite's node pattern on one matrix: ONNX Runtime's output equals x @ Wᵀ of the
    de-quantized weights to fp32 rounding. The forms written for int8 activations (accuracy 4:
    5-8-bit codes as 8-bit) are checked the same way, run with fp32 activations (accuracy 0), so
    only the layout of their weights is under test, exactly."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from workbench.onnx.nbits import rewrite
    from workbench.onnx.gguf_blocks import BlockTensor

    n, k = 48, 512
    tensor: BlockTensor = parse_tensor("w", kind, random_blocks(kind, n, k, seed=1), n, k)
    w = tensor.dequantized().astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w_t"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])],
        [onnx.numpy_helper.from_array(np.ascontiguousarray(w.T), "w_t")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    report = rewrite(model, {"w": tensor}, accuracy_level=accuracy)
    assert [r.form.startswith("MatMulNBits") for r in report.weights] == [True]
    nbits = [node for node in model.graph.node if node.op_type == "MatMulNBits"]
    bits = {a.name: a.i for a in nbits[0].attribute}["bits"]
    assert bits == (8 if accuracy == 4 and tensor.bits > 4 else 4), report.weights[0].form
    for node in nbits:  # fp32 activations for the check
        for attr in node.attribute:
            if attr.name == "accuracy_level":
                attr.i = 0
    assert "MatMulNBits" in {node.op_type for node in model.graph.node}
    assert not any(i.name == "w_t" for i in model.graph.initializer)  # the fp32 copy is gone
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).standard_normal((3, k)).astype(np.float32)
    got = session.run(None, {"x": x})[0]
    exact = x.astype(np.float64) @ tensor.dequantized().T
    scale = np.abs(x).astype(np.float64) @ np.abs(tensor.dequantized()).T  # bound of the rounding error
    assert (np.abs(got - exact) <= 1e-5 * scale + 1e-6).all()


def test_read_gguf_maps_block_types_and_lists_the_rest(tmp_path, tiny_model_dirs):
    import shutil

    from workbench.testing.tiny_gguf import build_gguf_twin

    hf = tmp_path / "hf"
    shutil.copytree(tiny_model_dirs["llama"], hf)
    path = build_gguf_twin(hf, tmp_path / "tiny.gguf")
    mapped, others = read_gguf(path)
    assert {t.gguf_type for t in mapped.values()} == {"Q8_0", "Q4_1", "Q5_0", "Q4_0", "Q5_1"}
    assert set(others.values()) == {"F32"}  # the norms
    (tmp_path / "bad.gguf").write_bytes(b"GGUF" + b"\0" * 20)
    with pytest.raises(Exception, match="not a readable GGUF"):
        read_gguf(tmp_path / "bad.gguf")
