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

import onnxruntime as ort

from workbench.onnx.kernels import matmul_session, median_ms


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
            sess, nbytes = matmul_session(n, k * factor, bits, accuracy, zp, args.threads)
            ms = median_ms(sess, k * factor, args.repeats if n < 10000 else max(10, args.repeats // 10))
            print(f"{n:>6} x {k:<4}  {label:<30} {ms:8.3f} {nbytes / 1e6:7.2f} {nbytes / ms / 1e6:7.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
