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


WANTED_FLAGS = ("avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "i8mm", "sve")


def cpu_flags(text: str | None = None) -> list[str]:
    """The vector-instruction flags that pick ONNX Runtime's and llama.cpp's kernels (AVX2,
    AVX-512 and its VNNI/BF16/FP16 parts, AVX-VNNI, AMX; NEON dot products and SVE on Arm), in
    ``WANTED_FLAGS`` order, then any other ``avx512*`` flag. ``text``: /proc/cpuinfo's (read
    when None); empty where it cannot be read."""
    if text is None:
        try:
            text = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    line = next((x for x in text.splitlines() if x.startswith(("flags", "Features"))), "")
    have = set(line.split(":", 1)[-1].split())
    extra = sorted(f for f in have if f.startswith("avx512") and f not in WANTED_FLAGS)
    return [f for f in WANTED_FLAGS if f in have] + extra


def machine_label(env: dict) -> str:
    """One line naming the machine of a recorded ``environment()``: CPU model, cores and the
    flags that choose kernels, e.g. ``'Intel Xeon · 2 cores · avx2 fma avx512f amx_int8'``."""
    flags = " ".join(f for f in env.get("cpu_flags", []) if f not in ("avx", "f16c")) or "no vector flags read"
    cores = env.get("cores")
    gpu = f" · GPU {env['gpu']}" if env.get("gpu") else ""
    return f"{env.get('cpu') or 'unknown CPU'} · {cores} cores · {flags}{gpu}" if cores else \
        f"{env.get('cpu') or 'unknown CPU'} · {flags}{gpu}"


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
    env["machine"] = machine_label(env)
    try:
        import onnxruntime as ort

        env["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError:
        pass
    return env
