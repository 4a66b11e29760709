"""What an ONNX export is, shared by the parent (``cache``) and the child (``builder``): its
variants, file names, the library versions it is keyed by, and its input and output names."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..common import library_versions
from ..store.sources import sha256_file

VARIANTS = ("fp32", "fused", "int8", "q4", "q4a8", "gqa", "gqa_q4", "gqa_q4a8")
# variant -> the export it is made from (made first); q4 and q4a8 fall back to fp32 where fusing
# finds nothing, and take their weights from the model's GGUF
SOURCES = {"fused": "fp32", "int8": "fp32", "q4": "fused", "q4a8": "fused", "gqa_q4": "gqa", "gqa_q4a8": "gqa"}
DERIVED = tuple(SOURCES)
FROM_GGUF = ("q4", "q4a8", "gqa_q4", "gqa_q4a8")
# MatMulNBits: 0 = fp32 activations, 4 = int8 per block
ACCURACY_LEVELS = {"q4": 0, "q4a8": 4, "gqa_q4": 0, "gqa_q4a8": 4}
# how a q4 export (fp32 activations) puts weights with 5-8-bit codes in: "measure" (default: the
# faster of fp32 and two 4-bit halves on this machine, timed at export), "fp32" or "halves"
WIDE_CODES_ENV = "WORKBENCH_Q4_WIDE_CODES"
WIDE_CODES_MODES = ("measure", "fp32", "halves")
# which graph a variant is: the workbench's own export (torch.onnx, then fusions) or ONNX Runtime's
# decode graph from onnxruntime-genai's model builder (``genai_graph``); recorded in export.json
GRAPHS = {v: "ort-genai-builder" if v.startswith("gqa") else "workbench" for v in VARIANTS}
EXPORT_FORMAT = 1  # bump when the graph's interface changes (all variants are made again)
RECIPES = {"fp32": 1, "fused": 1, "int8": 2, "q4": 3, "q4a8": 3, "gqa": 1, "gqa_q4": 2, "gqa_q4a8": 2}  # bump one when its recipe changes
EXPORT_MANIFEST = "export.json"
ONNX_FILE = "model.onnx"
DATA_FILE = "model.onnx.data"
EXPORT_LIBRARIES = ("torch", "transformers", "onnx", "onnxscript", "onnxruntime")
BUILDER_LIBRARIES = ("onnxruntime-genai",)  # also keys the builder route's variants


def wide_codes_mode() -> str | None:
    """``WORKBENCH_Q4_WIDE_CODES`` as set (None when unset: ``measure``). Raises ``ExportError``
    naming the choices for any other value."""
    import os

    from ..errors import ExportError

    mode = os.environ.get(WIDE_CODES_ENV, "").strip() or None
    if mode is not None and mode not in WIDE_CODES_MODES:
        raise ExportError(f"{WIDE_CODES_ENV}={mode!r}: use measure (the default), fp32 or halves.")
    return mode


def past_names(layers: int, prefix: str) -> list[str]:
    """``past_key_values.0.key, past_key_values.0.value, ...`` (or ``present.N.*``)."""
    return [f"{prefix}.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]


def export_versions(variant: str = "fp32") -> dict[str, str]:
    """Versions of the libraries an export of ``variant`` depends on (a new version makes a new
    export); the builder route's variants add onnxruntime-genai's."""
    extra = BUILDER_LIBRARIES if GRAPHS.get(variant) == "ort-genai-builder" else ()
    return library_versions(EXPORT_LIBRARIES + extra)


def versions_key(variant: str = "fp32") -> str:
    """Short key naming the library versions and recipe an export was made with."""
    text = json.dumps({"format": EXPORT_FORMAT, **export_versions(variant)}, sort_keys=True)
    return f"v{EXPORT_FORMAT}.{RECIPES[variant]}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def describe_files(folder: Path) -> dict[str, dict]:
    """Size and sha256 of every file of an export folder but its manifest."""
    return {
        p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != EXPORT_MANIFEST
    }


GATHER_OPS = ("Gather", "GatherBlockQuantized")
# inputs a step reads one row of per position: an embedding table, rotary cos/sin caches
ROW_READ_INPUTS = {"Gather": (0,), "GatherBlockQuantized": (0,), "RotaryEmbedding": (2, 3),
                   "GroupQueryAttention": (7, 8)}


def weight_bytes_per_token(onnx_path: Path) -> int:
    """Bytes of constant weights one decode step reads: every initializer, except those only read
    a row at a time (``ROW_READ_INPUTS``: an embedding table, rotary cos/sin caches), directly or
    through a ``Transpose``. Read from the graph without its data."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    sizes = {}
    for init in model.graph.initializer:
        external = {e.key: e.value for e in init.external_data}
        sizes[init.name] = int(external["length"]) if "length" in external else len(init.raw_data) or (
            len(init.float_data) * 4 + len(init.int64_data) * 8 + len(init.int32_data) * 4)
    readers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)

    def row_read(node, name: str) -> bool:
        return any(i < len(node.input) and node.input[i] == name for i in ROW_READ_INPUTS.get(node.op_type, ()))

    def gathered_only(name: str) -> bool:  # through a Transpose too (a tied embedding)
        nodes = readers.get(name, [])
        return bool(nodes) and all(row_read(n, name) and list(n.input).count(name) == 1
                                   or (n.op_type == "Transpose" and gathered_only(n.output[0])) for n in nodes)

    return sum(size for name, size in sizes.items() if not gathered_only(name))
