"""Formatting numbers for people, at the edge (CLI, pages). Compute code keeps raw numbers."""
from __future__ import annotations


def human_bytes(n: float) -> str:
    """Bytes in decimal units: 0 B, 999 B, 1.5 KB, 541.6 MB, 1.1 GB, 2.0 TB."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def human_count(n: int) -> str:
    """Parameter counts: 82M, 135M, 141K."""
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"
