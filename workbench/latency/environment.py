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


def environment() -> dict:
    """CPU model, cores, load, GPU and library versions: recorded with every result."""
    import psutil
    import torch

    versions = library_versions(
        ("torch", "transformers", "onnxruntime", "onnxruntime-gpu", "onnx", "onnxruntime-genai", "numpy"), missing=None
    )
    env = {
        "cpu": _cpu_model(),
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
