"""ONNX Runtime's CPU kernels for one weight, timed alone at M = 1: fp32 ``MatMul`` against
``MatMulNBits`` forms, on random weights of the same shape.

Used by ``benchmarks/matmulnbits_kernels.py`` (the table in
docs/measurements/matmulnbits-kernels-cpu.txt) and by the q4 export (``nbits.rewrite``), which
measures, on the machine it runs on, whether a weight with 5- to 8-bit codes is faster as two
4-bit halves or de-quantized in fp32 when activations stay fp32: which one wins depends on the
CPU's kernels, so it is measured, not assumed.
"""
from __future__ import annotations

import time

import numpy as np

BLOCK = 32


def matmul_session(n: int, k: int, bits: int | None, accuracy: int, zero_points: bool, threads: int,
                   offsets: bool = False, block: int = BLOCK):
    """A one-node graph ``y = x @ W`` (x: (1, k), W: (k, n)); ``bits`` None = fp32 ``MatMul``.
    ``offsets`` adds the per-block offset correction the q4 graphs carry for Q4_1-like blocks
    (``(x @ S) @ offsetsᵀ``, S summing each block of x). Returns the session and the bytes of its
    constants."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    blocks = k // block
    if bits is None:
        inits = [numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w")]
        nodes = [helper.make_node("MatMul", ["x", "w"], ["y0" if offsets else "y"])]
    else:
        inits = [numpy_helper.from_array(rng.integers(0, 256, (n, blocks, block * bits // 8), dtype=np.uint8), "b"),
                 numpy_helper.from_array(rng.random(n * blocks, dtype=np.float32), "s")]
        if zero_points:
            per_row = (blocks * bits + 7) // 8
            inits.append(numpy_helper.from_array(rng.integers(0, 256, n * per_row, dtype=np.uint8), "z"))
        nodes = [helper.make_node("MatMulNBits", ["x"] + [t.name for t in inits], ["y0" if offsets else "y"],
                                  domain="com.microsoft", K=k, N=n, bits=bits, block_size=block,
                                  accuracy_level=accuracy)]
    if offsets:
        sums = np.kron(np.eye(blocks, dtype=np.float32), np.ones((block, 1), np.float32))
        inits += [numpy_helper.from_array(sums, "sums"),
                  numpy_helper.from_array(rng.random((blocks, n), dtype=np.float32), "off")]
        nodes += [helper.make_node("MatMul", ["x", "sums"], ["xs"]), helper.make_node("MatMul", ["xs", "off"], ["c"]),
                  helper.make_node("Add", ["y0", "c"], ["y"])]
    graph = helper.make_graph(nodes, "one", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.force_spinning_stop", "1")
    nbytes = sum(len(t.raw_data) for t in inits)
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"]), nbytes


def median_ms(session, k: int, repeats: int, warmup: int = 20) -> float:
    """Median milliseconds of one run of ``session`` on a random (1, k) input."""
    x = np.random.default_rng(1).random((1, k), dtype=np.float32)
    for _ in range(warmup):
        session.run(None, {"x": x})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, {"x": x})
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1000


def wide_codes_timing(n: int, k: int, offsets: bool, threads: int, rounds: int = 5, repeats: int = 5) -> dict:
    """For an (N, K) weight with 5- to 8-bit codes and fp32 activations: the median ms of it as
    fp32 ``MatMul`` (de-quantized) and as two 4-bit halves (``MatMulNBits`` at K = 2K, zero
    points, and an offset correction when ``offsets``), the two timed in turns; ``{"fp32_ms", "halves_ms",
    "fp32": whether fp32 is faster}``."""
    fp32, _ = matmul_session(n, k, None, 0, False, threads)  # de-quantized: no correction
    halves, _ = matmul_session(n, 2 * k, 4, 0, True, threads, offsets=offsets)
    warm = max(2, min(20, int(2e8 // (n * k * 4)) + 1))  # fewer runs for a large head
    a, b = [], []
    for _ in range(rounds):
        a.append(median_ms(fp32, k, repeats, warmup=warm))
        b.append(median_ms(halves, 2 * k, repeats, warmup=warm))
    fp32_ms, halves_ms = float(np.median(a)), float(np.median(b))
    return {"fp32_ms": round(fp32_ms, 3), "halves_ms": round(halves_ms, 3), "fp32": fp32_ms < halves_ms}
