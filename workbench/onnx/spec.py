"""What an ONNX export is, shared by the parent (``cache``) and the child (``builder``): its
variants, file names, the library versions it is keyed by, and its input and output names."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..common import library_versions
from ..store.sources import sha256_file

VARIANTS = ("fp32", "fused", "int8")
DERIVED = ("fused", "int8")  # made from the fp32 export, which is made first
EXPORT_FORMAT = 1  # bump when the graph's interface changes (all variants are made again)
RECIPES = {"fp32": 1, "fused": 1, "int8": 2}  # bump one when that variant's recipe changes
EXPORT_MANIFEST = "export.json"
ONNX_FILE = "model.onnx"
DATA_FILE = "model.onnx.data"
EXPORT_LIBRARIES = ("torch", "transformers", "onnx", "onnxscript", "onnxruntime")


def past_names(layers: int, prefix: str) -> list[str]:
    """``past_key_values.0.key, past_key_values.0.value, ...`` (or ``present.N.*``)."""
    return [f"{prefix}.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]


def export_versions() -> dict[str, str]:
    """Versions of the libraries an export depends on (a new version makes a new export)."""
    return library_versions(EXPORT_LIBRARIES)


def versions_key(variant: str = "fp32") -> str:
    """Short key naming the library versions and recipe an export was made with."""
    text = json.dumps({"format": EXPORT_FORMAT, **export_versions()}, sort_keys=True)
    return f"v{EXPORT_FORMAT}.{RECIPES[variant]}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def describe_files(folder: Path) -> dict[str, dict]:
    """Size and sha256 of every file of an export folder but its manifest."""
    return {
        p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != EXPORT_MANIFEST
    }
