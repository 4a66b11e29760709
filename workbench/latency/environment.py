"""The machine a measurement ran on, recorded with every result: CPU, cores, memory, load,
GPU, library versions and execution providers."""
from __future__ import annotations

import os
import platform
from pathlib import Path

from ..common import cpu_count, library_versions


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The vector-instruction flags that pick ONNX Runtime's and llama.cpp's kernels."""
    wanted = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_int8", "asimd", "sve")
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    line = next((x for x in text.splitlines() if x.startswith(("flags", "Features"))), "")
    have = set(line.split(":", 1)[-1].split())
    return [f for f in wanted if f in have]


def memory_read_bandwidth(threads: int | None = None, size_mb: int = 256, repeats: int = 5) -> dict:
    """Measured memory read bandwidth: the best of ``repeats`` parallel sums over a buffer far
    larger than the caches, with ``threads`` threads (the benchmark's own). A decode step that
    reads every weight once can go no faster than weight bytes / this."""
    import time

    import torch

    threads = int(threads or cpu_count())
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        buffer = torch.ones(size_mb * 2**20 // 4, dtype=torch.float32)
        buffer.sum()  # touch every page once before timing
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            buffer.sum()
            best = min(best, time.perf_counter() - start)
        del buffer
    finally:
        torch.set_num_threads(before)
    return {"gb_s": round(size_mb * 2**20 / best / 1e9, 2), "threads": threads, "buffer_mb": size_mb,
            "method": f"best of {repeats} torch.sum over a {size_mb} MiB float32 buffer"}


def environment() -> dict:
    """CPU model, cores, load, GPU and library versions: recorded with every result."""
    import psutil
    import torch

    versions = library_versions(
        ("torch", "transformers", "onnxruntime", "onnxruntime-gpu", "onnx", "onnxruntime-genai", "llama-cpp-python",
         "numpy"), missing=None
    )
    env = {
        "cpu": _cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": cpu_count(),
        "logical_cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "versions": versions,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import onnxruntime as ort

        env["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError:
        pass
    return env
