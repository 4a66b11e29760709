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
WORKING_SET = 256 * 2**20  # bytes a timing run reads: well past the caches of the CPUs seen here
MAX_TIMED = 1_500_000_000  # bytes of one fp32 copy past which a weight is not timed (protobuf's 2 GB limit)
FP32_MARGIN = 0.9  # fp32 (2-4x the bytes of the blocks) only where it is at least 10 % faster


def matmul_session(n: int, k: int, bits: int | None, accuracy: int, zero_points: bool, threads: int,
                   offsets: bool = False, block: int = BLOCK, copies: int = 1):
    """A graph of ``copies`` one-weight products ``y_i = x @ W_i`` (x: (1, k), each W_i: (k, n),
    its own random values); ``bits`` None = fp32 ``MatMul``. ``offsets`` adds the per-block offset
    correction the q4 graphs carry for Q4_1-like blocks (``(x @ S) @ offsetsᵀ``, S summing each
    block of x). Several copies make the weights read from memory, not cache, as in a decode step
    of a whole model. Returns the session and the bytes of one copy's constants."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    blocks = k // block
    inits, nodes, outputs = [], [], []
    if offsets:
        inits.append(numpy_helper.from_array(np.kron(np.eye(blocks, dtype=np.float32), np.ones((block, 1), np.float32)), "sums"))
        nodes.append(helper.make_node("MatMul", ["x", "sums"], ["xs"]))
    for c in range(copies):
        y, mine = f"y{c}", []
        if bits is None:
            mine.append(numpy_helper.from_array(rng.random((k, n), dtype=np.float32) - 0.5, f"w{c}"))
            nodes.append(helper.make_node("MatMul", ["x", f"w{c}"], [f"{y}_0" if offsets else y]))
        else:
            mine += [numpy_helper.from_array(rng.integers(0, 256, (n, blocks, block * bits // 8), dtype=np.uint8), f"b{c}"),
                     numpy_helper.from_array(rng.random(n * blocks, dtype=np.float32), f"s{c}")]
            if zero_points:
                per_row = (blocks * bits + 7) // 8
                mine.append(numpy_helper.from_array(rng.integers(0, 256, n * per_row, dtype=np.uint8), f"z{c}"))
            nodes.append(helper.make_node("MatMulNBits", ["x"] + [t.name for t in mine], [f"{y}_0" if offsets else y],
                                          domain="com.microsoft", K=k, N=n, bits=bits, block_size=block,
                                          accuracy_level=accuracy))
        if offsets:
            mine.append(numpy_helper.from_array(rng.random((blocks, n), dtype=np.float32), f"off{c}"))
            nodes += [helper.make_node("MatMul", ["xs", f"off{c}"], [f"c{c}"]), helper.make_node("Add", [f"{y}_0", f"c{c}"], [y])]
        inits += mine
        outputs.append(helper.make_tensor_value_info(y, TensorProto.FLOAT, [1, n]))
    graph = helper.make_graph(nodes, "one", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.force_spinning_stop", "1")
    nbytes = sum(len(t.raw_data) for t in inits if t.name not in ("sums",)) // copies
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


def wide_codes_timing(n: int, k: int, offsets: bool, threads: int, rounds: int = 3, repeats: int = 3,
                      working_set: int = WORKING_SET, block: int = BLOCK) -> dict:
    """For an (N, K) weight with 5- to 8-bit codes and fp32 activations: ms per product of it as
    fp32 ``MatMul`` (de-quantized) and as two 4-bit halves (``MatMulNBits`` at K = 2K, zero
    points, and an offset correction when ``offsets``), each form with enough copies of the weight
    to read ``working_set`` bytes a run (from memory, as a decode step does), the two timed in
    turns. fp32 is chosen only when it is clearly faster (``FP32_MARGIN``): it holds 2-4 times the
    bytes. A weight whose fp32 copy is over ``MAX_TIMED`` bytes is not timed (one graph could not
    hold it) and keeps the halves. Returns ``{"fp32_ms", "halves_ms", "fp32": the choice}``."""
    if n * k * 4 > MAX_TIMED:
        return {"fp32_ms": None, "halves_ms": None, "fp32": False,
                "chosen_by": f"not timed: its fp32 copy would be {n * k * 4 / 1e9:.1f} GB"}
    timed = []
    for bits, factor, extra in ((None, 1, False), (4, 2, offsets)):
        one = n * k * 4 if bits is None else n * k + n * (2 * k // block) * 5  # bytes of one copy
        copies = max(1, min(64, working_set // one))  # a weight as large as the working set: one copy
        session, _ = matmul_session(n, factor * k, bits, 0, bits is not None, threads, offsets=extra, block=block,
                                    copies=copies)
        timed.append((session, factor * k, copies))
    samples = [[], []]
    for _ in range(rounds):
        for i, (session, width, copies) in enumerate(timed):
            samples[i].append(median_ms(session, width, repeats, warmup=2) / copies)
    fp32_ms, halves_ms = (round(float(np.median(v)), 4) for v in samples)  # decided on what is stored
    return {"fp32_ms": fp32_ms, "halves_ms": halves_ms, "fp32": fp32_ms < FP32_MARGIN * halves_ms}
