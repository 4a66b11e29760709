"""Export a store model to an ONNX decoder with KV cache, cached in the store.

The graph (one per model, variant and library versions) takes::

    input_ids                  (batch, sequence)           int64
    attention_mask             (batch, total_sequence)     int64   1 = attend, 0 = padding
    position_ids               (batch, sequence)           int64
    past_key_values.N.key      (batch, kv_heads, past_sequence, head_dim)  float32, N = 0..layers-1
    past_key_values.N.value    (same)

and returns ``logits`` of the **last position only** ``(batch, 1, vocab)`` (so a 512-token prefill
does not return 512 x vocab floats) and ``present.N.key`` / ``present.N.value``
``(batch, kv_heads, total_sequence, head_dim)``. A prefill feeds past tensors of length 0; each
later token feeds the previous ``present`` back, so generation costs one forward pass per token.
These names are the ones onnxruntime-genai expects.

Variants: ``fp32`` (``torch.onnx.export(dynamo=True)`` on a small wrapper that builds a
``DynamicCache`` from flat tensors); ``fused`` (the fp32 graph rewritten into ONNX Runtime's own
CPU ops by transformers' ``fuse_for_onnxruntime``: rotary embeddings, skip RMS norms, packed
q/k/v projections; same interface, same weights, fewer and larger kernels); and ``int8`` (the
fp32 graph with constants folded, so the tied LM head becomes a plain initializer, then
``onnxruntime.quantization.quantize_dynamic``); ``gqa`` (ONNX Runtime's own decode graph, made by
onnxruntime-genai's model builder and given this interface, see ``genai_graph``; needs the
``bench`` extra and a head size that is a multiple of 16) and ``gqa_q4`` / ``gqa_q4a8`` (that
graph with the GGUF's own blocks, as ``q4`` / ``q4a8``). ``export.json``'s ``graph`` says which
graph a variant is.

Layout: ``Store().export_root(<model id>)/<variant>-<versions key>/`` holding ``model.onnx``,
``model.onnx.data`` (weights) and ``export.json`` (interface, versions, size and sha256 of every
file). The export runs in a child process that writes into the stage of the store's one install
primitive (``workbench.store.install.installing``); only a finished, checked folder is renamed
into place, in one rename even when it replaces an older export, so a failed or interrupted
export leaves nothing (staging folders of dead processes are swept by ``Store``) and a full disk
is a ``DiskSpaceError``. A cached export whose files do not
match ``export.json`` is exported again. This module does not run or time the graph (see
``workbench.runtime.backends.ort`` and ``workbench.latency``).
"""
from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from ..common import Progress, cpu_count, quiet
from ..errors import ExportError
from ..store import Store
from ..store.install import Installation, installing
from ..store.sources import sha256_file
from .driver import run_child
from .spec import (
    ACCURACY_LEVELS,
    DERIVED,
    EXPORT_MANIFEST,
    FROM_GGUF,
    ONNX_FILE,
    SOURCES,
    VARIANTS,
    past_names,
    versions_key,
    wide_codes_mode,
)

_VERIFIED: dict[tuple[str, int, int], bool] = {}  # (manifest path, mtime_ns, size) -> hashes ok
_VERIFIED_LOCK = threading.Lock()


@dataclass(frozen=True)
class OnnxExport:
    """A finished export on disk and the facts a runtime needs to drive it."""

    model_id: str
    variant: str
    directory: Path
    num_layers: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    size_bytes: int
    export_seconds: float
    versions: dict
    self_check_max_abs_diff: float  # ORT vs torch on a short prompt, measured right after export
    graph: str = "workbench"  # "workbench" | "ort-genai-builder" (spec.GRAPHS)

    @property
    def onnx_path(self) -> Path:
        return self.directory / ONNX_FILE

    @property
    def input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "position_ids"] + past_names(self.num_layers, "past_key_values")

    @property
    def output_names(self) -> list[str]:
        return ["logits"] + past_names(self.num_layers, "present")


def _check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ExportError(f"Unknown export variant '{variant}': pick one of {', '.join(VARIANTS)}.")
    return variant


def export_dir(store: Store, model_id: str, variant: str = "fp32") -> Path:
    card = store.card(model_id)
    return store.export_root(card.id) / f"{_check_variant(variant)}-{versions_key(variant)}"


def check_export(directory: Path, full: bool = True) -> str:
    """'' if the export folder matches its manifest, else what is wrong. ``full`` re-hashes
    every file (remembered per process until a file changes)."""
    manifest_path = directory / EXPORT_MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
    except (OSError, json.JSONDecodeError, KeyError) as err:
        return f"{EXPORT_MANIFEST} is missing or unreadable ({err})"
    if ONNX_FILE not in files:
        return f"{EXPORT_MANIFEST} lists no {ONNX_FILE}"
    stamp = []
    for name, meta in files.items():
        f = directory / name
        if not f.is_file():
            return f"{name} is missing"
        st = f.stat()
        if st.st_size != meta["size"]:
            return f"{name} is {st.st_size} bytes, the manifest says {meta['size']}"
        stamp.append((name, st.st_mtime_ns, st.st_size))
    if not full:
        return ""
    key = (str(manifest_path), hash(tuple(stamp)), manifest_path.stat().st_mtime_ns)
    with _VERIFIED_LOCK:
        if _VERIFIED.get(key):
            return ""
    for name, meta in files.items():
        if sha256_file(directory / name) != meta["sha256"]:
            return f"{name} does not match its sha256 in the manifest"
    with _VERIFIED_LOCK:
        _VERIFIED[key] = True
    return ""


def _load_export(directory: Path) -> OnnxExport:
    m = json.loads((directory / EXPORT_MANIFEST).read_text(encoding="utf-8"))
    return OnnxExport(
        model_id=m["model_id"],
        variant=m["variant"],
        directory=directory,
        num_layers=m["num_layers"],
        kv_heads=m["kv_heads"],
        head_dim=m["head_dim"],
        vocab_size=m["vocab_size"],
        size_bytes=sum(f["size"] for f in m["files"].values()),
        export_seconds=m["export_seconds"],
        versions=m["versions"],
        self_check_max_abs_diff=m["self_check_max_abs_diff"],
        graph=m.get("graph", "workbench"),
    )


def cached_export(store: Store, model_id: str, variant: str = "fp32", verify: bool = True) -> OnnxExport | None:
    """The cached export if present, intact and made from the installed weights; else None."""
    directory = export_dir(store, model_id, variant)
    if not directory.is_dir() or check_export(directory, full=verify):
        return None
    try:
        manifest = json.loads((directory / EXPORT_MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("model_fingerprint") != store.fingerprint(model_id):
            return None  # the model was reinstalled with other weights
        mode = wide_codes_mode() if ACCURACY_LEVELS.get(variant) == 0 else None
        if mode is not None and manifest.get("wide_codes", "halves") != mode:
            return None  # made with another WORKBENCH_Q4_WIDE_CODES than the one set now
        return _load_export(directory)
    except (KeyError, json.JSONDecodeError, OSError):
        return None


def estimated_seconds(layers: int, variant: str = "fp32") -> float:
    """Rough export time on 2 cores, this variant's own step only: a line through export times
    seen for 2- and 30-layer models (an estimate for progress bars and waits, not a measurement)."""
    return {"fp32": 8 + 4 * layers, "fused": 5 + 0.7 * layers, "q4": 30 + 2 * layers,
            "q4a8": 30 + 2 * layers, "gqa": 8 + layers, "gqa_q4": 30 + 2 * layers,
            "gqa_q4a8": 30 + 2 * layers}.get(variant, 4 + layers)


def pending_export_seconds(store: Store, model_id: str, variants) -> float:
    """Estimated seconds of the exports still to make before ``variants`` of a model are ready:
    each variant and the ones it is made from (``SOURCES``) that have no cached export, once."""
    layers = store.card(model_id).layers or 12
    missing = set()
    for variant in variants:
        while variant is not None:
            if variant not in missing and cached_export(store, model_id, variant, verify=False) is None:
                missing.add(variant)
            variant = SOURCES.get(variant)
    return sum(estimated_seconds(layers, v) for v in missing)


def export_model(
    store: Store,
    model_id: str,
    variant: str = "fp32",
    progress: Progress = quiet,
    force: bool = False,
    threads: int | None = None,
    timeout_s: float | None = None,
) -> OnnxExport:
    """Return the cached export of ``model_id`` or make it (minutes for a real model).

    ``progress(fraction, message)`` is called from this thread. ``fused`` and ``int8`` are made from ``fp32``, ``q4`` and ``q4a8`` from ``fused`` (and the GGUF), and are made
    from the ``fp32`` export, and make it first. Raises ``ExportError`` (nothing left behind) if
    the export fails, is interrupted, or exceeds ``timeout_s``.
    """
    _check_variant(variant)
    if variant in FROM_GGUF:
        wide_codes_mode()  # a bad WORKBENCH_Q4_WIDE_CODES is refused before any work
    card = store.card(model_id)
    store.path(card.id)  # raises if not installed or damaged
    if variant in DERIVED:
        source = _source_export(store, card.id, variant, lambda f, m: progress(0.7 * f, m), threads, timeout_s)
        lo = 0.7
    else:
        source, lo = None, 0.0
    target = export_dir(store, card.id, variant)
    with installing(store, "export", f"{card.id}-{variant}", target, lock=f"export-{card.id}",
                    what=f"exporting {card.id} ({variant}; a real fp32 export needs 0.5-1.7 GB)",
                    fix="export again") as inst:
        if not force:
            found = cached_export(store, card.id, variant)
            if found is not None:
                progress(1.0, f"cached export: {target}")
                return found
            if target.exists():
                problem = check_export(target) or "made from other weights"
                progress(lo, f"the cached export is unusable ({problem}); exporting again")
        gguf = None
        if variant in FROM_GGUF:
            gguf = store.gguf_file(card.id, lambda f, m: progress(lo, f"GGUF: {m}"))
        try:
            return _build_into(store, card, variant, source, inst, threads, timeout_s,
                               lambda f, m: progress(lo + (1 - lo) * f, m), gguf)
        except KeyboardInterrupt:
            raise ExportError(f"The export of {card.id} was interrupted; nothing was kept. Run it again.") from None


def _source_export(store: Store, model_id: str, variant: str, progress: Progress,
                   threads: int | None, timeout_s: float | None) -> OnnxExport:
    """The export ``variant`` is made from (``SOURCES``); the q4 variants take the fp32 graph
    where the fusions find nothing to fuse in this architecture."""
    wanted = SOURCES[variant]
    try:
        return export_model(store, model_id, wanted, lambda f, m: progress(f, f"{wanted}: {m}"), False, threads, timeout_s)
    except ExportError as err:
        if wanted != "fused" or "nothing to fuse" not in str(err):
            raise
    return export_model(store, model_id, "fp32", lambda f, m: progress(f, f"fp32: {m}"), False, threads, timeout_s)


def _build_into(store: Store, card, variant: str, source: OnnxExport | None, inst: Installation,
                threads: int | None, timeout_s: float | None, progress: Progress,
                gguf: Path | None = None) -> OnnxExport:
    """Run the builder into the install's stage, check it, then commit it to its target."""
    out, staging, target = inst.stage, inst.staging, inst.target
    args = [
        sys.executable, "-m", "workbench.onnx.builder",
        "--model-dir", str(store.path(card.id)), "--out", str(out), "--variant", variant,
        "--model-id", card.id, "--fingerprint", store.fingerprint(card.id),
        "--threads", str(threads or cpu_count()),
    ]
    if source is not None:
        args += ["--source", str(source.directory)]
    if gguf is not None:
        args += ["--gguf", str(gguf)]
    run_child(args, staging, progress, estimated_seconds(card.layers or 12, variant), timeout_s)

    def verify(stage: Path) -> None:
        problem = check_export(stage)
        if problem:
            raise ExportError(f"The export of {card.id} ({variant}) came out inconsistent: {problem}. "
                              "Try again; if it repeats, the exporter and these library versions disagree: report it.")

    inst.commit(verify=verify)  # export.json is the builder's, written last by it
    # drop exports made with other library versions: they would never be used again
    for other in target.parent.glob(f"{variant}-*"):
        if other != target and other.is_dir():
            store.discard_path(other)  # one rename out of the store, then deleted
    progress(1.0, f"exported to {target}")
    return _load_export(target)
