"""ONNX Runtime's ``MatMulNBits`` CPU kernels one at a time, against fp32 ``MatMul``, at M = 1.

Each row is a one-node graph (random codes, block 32) timed alone: the median of ``--repeats``
runs after a warm-up, with ``--threads`` intra-op threads. The weights stay in cache between
runs, so these are kernel costs, not memory-bound decode costs; they explain which forms the q4
variants use (see ``workbench.onnx.nbits``):

- 4-bit with and without the zero-point input (left out when every block's is 8),
- 8-bit against two 4-bit halves side by side along K (how 5-8-bit GGUF codes go in),
- ``accuracy_level`` 0 (fp32 activations, the ``q4`` variant) against 4 (int8 activations, ``q4a8``).

Shapes: SmolLM2's packed gate/up (3072 x 576) and its tied LM head (49152 x 576).

    .venv/bin/python benchmarks/matmulnbits_kernels.py [--threads 2] [--repeats 200]
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

BLOCK = 32


def session(n: int, k: int, bits: int | None, accuracy: int, zero_points: bool, threads: int):
    """A one-node graph ``y = x @ W`` (W: (k, n)); ``bits`` None = fp32 MatMul. Returns the
    session and the bytes of its constants."""
    rng = np.random.default_rng(0)
    blocks = k // BLOCK
    if bits is None:
        inits = [numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w")]
        node = helper.make_node("MatMul", ["x", "w"], ["y"])
    else:
        inits = [numpy_helper.from_array(rng.integers(0, 256, (n, blocks, BLOCK * bits // 8), dtype=np.uint8), "b"),
                 numpy_helper.from_array(rng.random(n * blocks, dtype=np.float32), "s")]
        if zero_points:
            per_row = (blocks * bits + 7) // 8
            inits.append(numpy_helper.from_array(rng.integers(0, 256, n * per_row, dtype=np.uint8), "z"))
        node = helper.make_node("MatMulNBits", ["x"] + [t.name for t in inits], ["y"], domain="com.microsoft",
                                K=k, N=n, bits=bits, block_size=BLOCK, accuracy_level=accuracy)
    graph = helper.make_graph([node], "one", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"]), \
        sum(len(t.raw_data) for t in inits)


def median_ms(sess, k: int, repeats: int) -> float:
    x = np.random.default_rng(1).random((1, k), dtype=np.float32)
    for _ in range(20):
        sess.run(None, {"x": x})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, {"x": x})
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args()
    print(f"onnxruntime {ort.__version__}, {platform.processor() or platform.machine()}, {args.threads} threads, "
          f"load {os.getloadavg()[0]:.2f}")
    forms = [  # label, bits, accuracy level, zero points, K factor (two 4-bit halves double K)
        ("fp32 MatMul", None, 0, False, 1),
        ("4-bit, acc 0, zero points", 4, 0, True, 1),
        ("4-bit, acc 0, no zero points", 4, 0, False, 1),
        ("4-bit, acc 4, zero points", 4, 4, True, 1),
        ("4-bit, acc 4, no zero points", 4, 4, False, 1),
        ("8-bit, acc 0", 8, 0, True, 1),
        ("8-bit, acc 4", 8, 4, True, 1),
        ("2 x 4-bit halves, acc 0", 4, 0, True, 2),
        ("2 x 4-bit halves, acc 4", 4, 4, True, 2),
    ]
    print(f"{'N x K':>12}  {'form':<30} {'ms':>8} {'MB':>7} {'GB/s':>7}")
    for n, k in ((3072, 576), (49152, 576)):
        for label, bits, accuracy, zp, factor in forms:
            sess, nbytes = session(n, k * factor, bits, accuracy, zp, args.threads)
            ms = median_ms(sess, k * factor, args.repeats if n < 10000 else max(10, args.repeats // 10))
            print(f"{n:>6} x {k:<4}  {label:<30} {ms:8.3f} {nbytes / 1e6:7.2f} {nbytes / ms / 1e6:7.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
