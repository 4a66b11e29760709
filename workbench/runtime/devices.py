"""Where models run: device names ('auto', 'cpu', 'cuda[:N]') and torch's CPU thread count."""
from __future__ import annotations

import torch

from ..errors import WorkbenchError


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'. Asking for CUDA without one fails."""
    device = (device or "auto").lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise WorkbenchError("CUDA was asked for but torch sees no GPU here; pick device 'cpu'.")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise WorkbenchError(f"Unknown device '{device}': use auto, cpu or cuda.")
    return device


def available_devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op CPU threads (process-wide); returns the count in force."""
    if threads:
        if threads < 1:
            raise WorkbenchError("Threads must be at least 1.")
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()
