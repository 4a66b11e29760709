"""ONNX exports of store models with a KV cache in and out, cached in the store.

- ``spec``: what an export is: variants, file names, input and output names, version key.
- ``cache``: the parent side: ``export_model`` (cached, atomic), ``cached_export``, ``check_export``.
- ``driver``: runs the builder in a child process and relays its progress.
- ``builder``: the child (``python -m workbench.onnx.builder``) that makes one variant's graph.

Importing this package loads no torch or onnxruntime; the builder does, in its own process.
"""
from .cache import (
    OnnxExport, cached_export, check_export, estimated_seconds, export_dir, export_model, pending_export_seconds,
)
from .spec import DERIVED, VARIANTS

__all__ = ["DERIVED", "VARIANTS", "OnnxExport", "cached_export", "check_export", "estimated_seconds", "pending_export_seconds",
           "export_dir", "export_model"]
