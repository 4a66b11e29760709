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
``onnxruntime.quantization.quantize_dynamic``).

Layout: ``Store().exports_dir/<model id>/<variant>-<versions key>/`` holding ``model.onnx``,
``model.onnx.data`` (weights) and ``export.json`` (interface, versions, size and sha256 of every
file). The export runs in a child process that writes into the store's staging folder; only a
finished, checked folder is renamed into place, so a failed or interrupted export leaves nothing
(staging folders of dead processes are swept by ``Store``). A cached export whose files do not
match ``export.json`` is exported again. This module does not run or time the graph (see
``ort_backend``, ``parity``, ``bench``).
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata as md
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import ExportError, ModelNotInstalledError
from .fetch import Progress, _quiet, sha256_file
from .store import MANIFEST, Store

VARIANTS = ("fp32", "fused", "int8")
DERIVED = ("fused", "int8")  # made from the fp32 export, which is made first
EXPORT_FORMAT = 1  # bump when the graph's interface changes (all variants are made again)
RECIPES = {"fp32": 1, "fused": 1, "int8": 2}  # bump one when that variant's recipe changes
EXPORT_MANIFEST = "export.json"
ONNX_FILE = "model.onnx"
DATA_FILE = "model.onnx.data"
_LIBRARIES = ("torch", "transformers", "onnx", "onnxscript", "onnxruntime")
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

    @property
    def onnx_path(self) -> Path:
        return self.directory / ONNX_FILE

    @property
    def input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "position_ids"] + past_names(self.num_layers, "past_key_values")

    @property
    def output_names(self) -> list[str]:
        return ["logits"] + past_names(self.num_layers, "present")


def past_names(layers: int, prefix: str) -> list[str]:
    return [f"{prefix}.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]


def library_versions() -> dict[str, str]:
    versions = {}
    for lib in _LIBRARIES:
        try:
            versions[lib] = md.version(lib)
        except md.PackageNotFoundError:
            versions[lib] = "missing"
    return versions


def versions_key(variant: str = "fp32") -> str:
    """Short key naming the library versions and recipe an export was made with."""
    text = json.dumps({"format": EXPORT_FORMAT, **library_versions()}, sort_keys=True)
    return f"v{EXPORT_FORMAT}.{RECIPES[variant]}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def _check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ExportError(f"Unknown export variant '{variant}': pick one of {', '.join(VARIANTS)}.")
    return variant


def export_dir(store: Store, model_id: str, variant: str = "fp32") -> Path:
    card = store.card(model_id)
    return store.exports_dir / card.id / f"{_check_variant(variant)}-{versions_key(variant)}"


def _model_fingerprint(model_dir: Path) -> str:
    """sha256 of the installed weights' file list (sizes + hashes), stable across reinstalls."""
    try:
        files = json.loads((model_dir / MANIFEST).read_text(encoding="utf-8"))["files"]
    except (OSError, json.JSONDecodeError, KeyError) as err:
        raise ModelNotInstalledError(
            f"{model_dir} has no readable store manifest ({err}); reinstall the model."
        ) from err
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def _describe_files(folder: Path) -> dict[str, dict]:
    return {
        p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != EXPORT_MANIFEST
    }


def check_export(directory: Path, full: bool = True) -> str:
    """'' if the export folder matches its manifest, else what is wrong. ``full`` re-hashes
    every file (about a second per 500 MB; remembered per process until a file changes)."""
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
    )


def cached_export(store: Store, model_id: str, variant: str = "fp32", verify: bool = True) -> OnnxExport | None:
    """The cached export if present, intact and made from the installed weights; else None."""
    directory = export_dir(store, model_id, variant)
    if not directory.is_dir() or check_export(directory, full=verify):
        return None
    try:
        manifest = json.loads((directory / EXPORT_MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("model_fingerprint") != _model_fingerprint(store.path(model_id)):
            return None  # the model was reinstalled with other weights
        return _load_export(directory)
    except (KeyError, json.JSONDecodeError, OSError):
        return None


@contextmanager
def _export_lock(store: Store, model_id: str):
    with open(store.home / f".export-{model_id}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def estimated_seconds(layers: int, variant: str = "fp32") -> float:
    """Rough export time on 2 cores, this variant's own step only (measured: fp32 of 30 layers
    ~125 s, of 2 layers ~10 s; fusing 30 layers ~25 s)."""
    return {"fp32": 8 + 4 * layers, "fused": 5 + 0.7 * layers}.get(variant, 4 + layers)


def export_model(
    store: Store,
    model_id: str,
    variant: str = "fp32",
    progress: Progress = _quiet,
    force: bool = False,
    threads: int | None = None,
    timeout_s: float | None = None,
) -> OnnxExport:
    """Return the cached export of ``model_id`` or make it (minutes for a real model).

    ``progress(fraction, message)`` is called from this thread. ``fused`` and ``int8`` are made
    from the ``fp32`` export, and make it first. Raises ``ExportError`` (nothing left behind) if
    the export fails, is interrupted, or exceeds ``timeout_s``.
    """
    _check_variant(variant)
    card = store.card(model_id)
    model_dir = store.path(card.id)  # raises if not installed or damaged
    if variant in DERIVED:
        def fp32_progress(f, msg):
            progress(0.7 * f, f"fp32: {msg}")

        source = export_model(store, card.id, "fp32", fp32_progress, False, threads, timeout_s)
        lo = 0.7
    else:
        source, lo = None, 0.0
    target = export_dir(store, card.id, variant)
    with _export_lock(store, card.id):
        if not force:
            found = cached_export(store, card.id, variant)
            if found is not None:
                progress(1.0, f"cached export: {target}")
                return found
            if target.exists():
                problem = check_export(target) or "made from other weights"
                progress(lo, f"the cached export is unusable ({problem}); exporting again")
        staging = Path(tempfile.mkdtemp(prefix=f"export-{card.id}-{os.getpid()}-", dir=store.staging_dir))
        try:
            out = staging / "out"
            out.mkdir()
            args = [
                sys.executable, "-m", "workbench.onnx_export",
                "--model-dir", str(model_dir), "--out", str(out), "--variant", variant,
                "--model-id", card.id, "--fingerprint", _model_fingerprint(model_dir),
                "--threads", str(threads or _cpu_count()),
            ]
            if source is not None:
                args += ["--source", str(source.directory)]
            estimate = estimated_seconds(card.layers or 12, variant)
            _run_child(args, staging, lambda f, m: progress(lo + (1 - lo) * f, m), estimate, timeout_s)
            problem = check_export(out)
            if problem:
                raise ExportError(f"The export of {card.id} ({variant}) came out inconsistent: {problem}. "
                                  "Try again; if it repeats, the exporter and these library versions disagree: report it.")
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                os.replace(target, staging / "old")
            os.replace(out, target)
            # drop exports made with other library versions: they would never be used again
            for other in target.parent.glob(f"{variant}-*"):
                if other != target and other.is_dir():
                    os.replace(other, staging / f"stale-{other.name}")
            progress(1.0, f"exported to {target}")
            return _load_export(target)
        except KeyboardInterrupt:
            raise ExportError(f"The export of {card.id} was interrupted; nothing was kept. Run it again.") from None
        except OSError as err:
            if err.errno == 28:
                raise ExportError(
                    f"The disk under {store.home} filled up while exporting {card.id}; nothing was kept. "
                    "A real fp32 export needs 0.5-1.7 GB: free space and export again."
                ) from err
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _run_child(args: list[str], staging: Path, progress: Progress, estimate: float, timeout_s: float | None) -> None:
    """Run the exporter child, relaying its progress lines and ticking through long phases."""
    log_path = staging / "export.log"
    shown = [0.0]

    def report(fraction: float, message: str) -> None:  # never moves backwards
        shown[0] = max(shown[0], min(fraction, 1.0))
        progress(shown[0], message)

    env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    with open(log_path, "w") as log:
        child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=root)
        lines: queue.Queue = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(x) for x in child.stdout], daemon=True)
        reader.start()
        start = time.monotonic()
        phase_lo, phase_hi, phase_msg, phase_t0 = 0.0, 0.05, "starting the exporter", start
        try:
            while True:
                try:
                    line = lines.get(timeout=0.5)
                    try:
                        msg = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    phase_lo, phase_hi, phase_msg = msg["lo"], msg["hi"], msg["message"]
                    phase_t0 = time.monotonic()
                    report(phase_lo, phase_msg)
                except queue.Empty:
                    if child.poll() is not None and not reader.is_alive():
                        break
                    # move through the phase on the clock so a long trace still shows life
                    span = max(estimate * (phase_hi - phase_lo), 1.0)
                    done = min((time.monotonic() - phase_t0) / span, 0.95)
                    elapsed = time.monotonic() - start
                    report(phase_lo + (phase_hi - phase_lo) * done, f"{phase_msg} ({elapsed:.0f} s)")
                if timeout_s is not None and time.monotonic() - start > timeout_s:
                    raise ExportError(
                        f"The export took longer than {timeout_s:.0f} s and was stopped; nothing was kept. "
                        "Free the CPU (other jobs slow it down) or raise the time limit."
                    )
        finally:
            if child.poll() is None:
                child.kill()
            child.wait()
    if child.returncode != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()
        reason = next((l for l in reversed(tail) if l.strip() and not l.startswith(" ")), "no output")
        if child.returncode < 0:
            reason = f"the exporter process was killed (signal {-child.returncode}); low memory is the usual cause"
        raise ExportError(
            f"Exporting to ONNX failed: {reason[:500]}. Nothing was kept. A real model needs about 1.2 GB of "
            "free RAM and 0.5-1.7 GB of disk; if those are fine, the architecture may not export with "
            f"these library versions ({', '.join(f'{k} {v}' for k, v in library_versions().items())})."
        )


# --- the child: runs in its own process (python -m workbench.onnx_export ...) --------------------

_PROGRESS_OUT = sys.stdout  # the child points this at the real stdout, everything else at stderr


def _say(lo: float, hi: float, message: str) -> None:
    """Tell the parent a phase from ``lo`` to ``hi`` (fractions of this export) has begun."""
    _PROGRESS_OUT.write(json.dumps({"lo": lo, "hi": hi, "message": message}) + "\n")
    _PROGRESS_OUT.flush()


def _text_config(config):
    return config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config


def _kv_shape(config) -> tuple[int, int, int]:
    text = _text_config(config)
    layers = text.num_hidden_layers
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return layers, kv_heads, head_dim


def _wrapper(module, layers: int):
    import torch
    from transformers import DynamicCache

    class KVDecoder(torch.nn.Module):
        """Flat past tensors in, last-position logits and flat present tensors out."""

        def __init__(self):
            super().__init__()
            self.model = module

        def forward(self, input_ids, attention_mask, position_ids, past):
            cache = DynamicCache(ddp_cache_data=[(past[2 * i], past[2 * i + 1]) for i in range(layers)])
            out = self.model(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                past_key_values=cache, use_cache=True, logits_to_keep=1,
            )
            present = []
            for layer in out.past_key_values.layers:
                present += [layer.keys, layer.values]
            return (out.logits,) + tuple(present)  # (B, 1, V), (B, H, P+S, D) x 2L

    return KVDecoder().eval()


def _name_dims(path: Path, layers: int) -> None:
    """Give the graph's symbolic dims readable names (the exporter calls them s10, s70, ...)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    names = {
        "input_ids": ["batch", "sequence"],
        "position_ids": ["batch", "sequence"],
        "attention_mask": ["batch", "total_sequence"],
        "logits": ["batch", None, None],
    }
    for i in range(layers):
        for kind in ("key", "value"):
            names[f"past_key_values.{i}.{kind}"] = ["batch", None, "past_sequence", None]
            names[f"present.{i}.{kind}"] = ["batch", None, "total_sequence", None]
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        for dim, name in zip(dims, names.get(value.name, [])):
            if name and dim.HasField("dim_param"):
                dim.dim_param = name
    onnx.save(proto, str(path))


def _self_check(onnx_path: Path, module, layers: int, kv_heads: int, head_dim: int, vocab: int, threads: int) -> float:
    """Max |Δlogits| of ORT vs torch on a 6-token prompt and one cached step."""
    import numpy as np
    import onnxruntime as ort
    import torch

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    ids = torch.arange(6, dtype=torch.long).unsqueeze(0) % vocab + 1  # (1, 6)
    with torch.no_grad():
        ref = module(torch.cat([ids, ids[:, :1]], 1)).logits[0]  # (7, V)
    feed = {"input_ids": ids.numpy(), "attention_mask": np.ones((1, 6), np.int64),
            "position_ids": np.arange(6, dtype=np.int64)[None]}
    for name in past_names(layers, "past_key_values"):
        feed[name] = np.zeros((1, kv_heads, 0, head_dim), np.float32)
    outs = sess.run(None, feed)
    diff = float(np.abs(outs[0][0, -1] - ref[5].numpy()).max())
    feed = {"input_ids": ids[:, :1].numpy(), "attention_mask": np.ones((1, 7), np.int64),
            "position_ids": np.array([[6]], np.int64)}
    feed.update(zip(past_names(layers, "past_key_values"), outs[1:]))
    outs = sess.run(None, feed)
    if outs[0].shape != (1, 1, vocab) or outs[1].shape[2] != 7:
        raise ExportError(f"The exported graph returned shapes {outs[0].shape} / {outs[1].shape}; expected "
                          f"(1, 1, {vocab}) and a cache of length 7.")
    return max(diff, float(np.abs(outs[0][0, -1] - ref[6].numpy()).max()))


def _child_fp32(model_dir: Path, out: Path, threads: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    _say(0.0, 0.05, "loading the model")
    module = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="sdpa", use_safetensors=True,
        trust_remote_code=False, local_files_only=True,
    ).eval()
    layers, kv_heads, head_dim = _kv_shape(module.config)
    vocab = module.get_output_embeddings().weight.shape[0]
    wrapper = _wrapper(module, layers)
    batch, seq, past_len = 2, 3, 5  # none is 1, so none gets specialized away
    ids = torch.randint(1, vocab, (batch, seq))
    mask = torch.ones(batch, past_len + seq, dtype=torch.long)
    pos = torch.arange(past_len, past_len + seq).unsqueeze(0).expand(batch, seq)
    past = tuple(torch.randn(batch, kv_heads, past_len, head_dim) for _ in range(2 * layers))
    auto = torch.export.Dim.AUTO
    dynamic = ({0: auto, 1: auto}, {0: auto, 1: auto}, {0: auto, 1: auto},
               tuple({0: auto, 2: auto} for _ in past))
    _say(0.05, 0.80, "tracing and converting the graph (torch.onnx dynamo exporter)")
    program = torch.onnx.export(
        wrapper, (ids, mask, pos, past), dynamo=True, dynamic_shapes=dynamic, optimize=True,
        input_names=["input_ids", "attention_mask", "position_ids"] + past_names(layers, "past_key_values"),
        output_names=["logits"] + past_names(layers, "present"), verbose=False,
    )
    if program is None:
        raise ExportError("torch.onnx.export returned no program.")
    _say(0.80, 0.90, "saving the graph")
    path = out / ONNX_FILE
    program.save(str(path), external_data=True)
    del program
    produced = sorted(p.name for p in out.iterdir())
    if produced != sorted([ONNX_FILE, DATA_FILE]):
        raise ExportError(f"The exporter wrote {produced}, expected {ONNX_FILE} and {DATA_FILE}.")
    _name_dims(path, layers)
    _say(0.90, 0.98, "checking the graph against torch")
    diff = _self_check(path, module, layers, kv_heads, head_dim, vocab, threads)
    return dict(num_layers=layers, kv_heads=kv_heads, head_dim=head_dim, vocab_size=vocab,
                self_check_max_abs_diff=diff)


def _child_int8(model_dir: Path, source: Path, out: Path, threads: int) -> dict:
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    meta = json.loads((source / EXPORT_MANIFEST).read_text(encoding="utf-8"))
    _say(0.0, 0.3, "folding constants (so the tied LM head is quantized too)")
    folded = out.parent / "folded.onnx"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(folded)
    opts.add_session_config_entry("session.optimized_model_external_initializers_file_name", "folded.onnx.data")
    opts.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    ort.InferenceSession(str(source / ONNX_FILE), opts, providers=["CPUExecutionProvider"])
    _say(0.3, 0.85, "quantizing weights to 8 bits (dynamic, per tensor)")
    # uint8 weights: on AVX2 without VNNI, int8 weights x uint8 activations saturate in 16-bit
    # sums (ONNX Runtime's quantization docs); measured on SmolLM2 here, uint8 kept 10/32 greedy
    # tokens where int8 kept 1/32 (per-channel int8: 0/32)
    quantize_dynamic(
        folded, out / ONNX_FILE, weight_type=QuantType.QUInt8, per_channel=False,
        op_types_to_quantize=["MatMul", "Gemm"], use_external_data_format=True,
        extra_options={"MatMulConstBOnly": True},
    )
    for f in out.parent.glob("folded.onnx*"):
        f.unlink()
    data = [p for p in out.iterdir() if p.name != ONNX_FILE]
    if len(data) == 1 and data[0].name != DATA_FILE:  # the quantizer names the data file itself
        import onnx

        proto = onnx.load(str(out / ONNX_FILE))
        for p in data:
            p.unlink()
        onnx.save(proto, str(out / ONNX_FILE), save_as_external_data=True, location=DATA_FILE)
    _say(0.85, 0.98, "checking the quantized graph runs")
    return _checked_facts(model_dir, meta, out, threads)


def _checked_facts(model_dir: Path, meta: dict, out: Path, threads: int) -> dict:
    """The source export's shape facts plus the self-check of the graph now in ``out``."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    module = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, use_safetensors=True, local_files_only=True
    ).eval()
    keys = ("num_layers", "kv_heads", "head_dim", "vocab_size")
    diff = _self_check(out / ONNX_FILE, module, *(meta[k] for k in keys), threads)
    return dict({k: meta[k] for k in keys}, self_check_max_abs_diff=diff)


def _child_fused(model_dir: Path, source: Path, out: Path, threads: int) -> dict:
    """The fp32 graph, rewritten into ONNX Runtime's fused CPU ops. transformers 5.23's
    ``fuse_for_onnxruntime`` (built on onnxscript's ORT fusions) replaces each pattern with an
    op computing exactly what it replaces; on a Llama-like graph (dynamic batch and length,
    attention mask kept) it fuses rotary embeddings, skip RMS norms and the packed q/k/v
    projection (GPT-2: skip layer norms).
    Attention itself stays unfused: ``GroupQueryAttention`` needs a batch-1 decode graph, and
    ONNX Runtime's CPU ``MultiHeadAttention`` is slower than the ops it would replace."""
    import onnx_ir as ir
    from transformers.exporters.onnxruntime_fusions import fuse_for_onnxruntime

    meta = json.loads((source / EXPORT_MANIFEST).read_text(encoding="utf-8"))
    _say(0.0, 0.1, "reading the fp32 graph")
    model = ir.load(str(source / ONNX_FILE))
    before = Counter(node.op_type for node in model.graph.all_nodes())
    _say(0.1, 0.6, "fusing into ONNX Runtime's ops (rotary, skip RMS norm, packed q/k/v)")
    fuse_for_onnxruntime(model, "cpu")
    after = Counter(node.op_type for node in model.graph.all_nodes())
    if after.total() >= before.total():
        raise ExportError("transformers' ONNX Runtime fusions found nothing to fuse in this graph; "
                          "use the fp32 variant for this model.")
    _say(0.6, 0.75, "saving the fused graph")
    ir.save(model, str(out / ONNX_FILE), external_data=DATA_FILE)
    del model
    _say(0.75, 0.98, "checking the fused graph against torch")
    facts = _checked_facts(model_dir, meta, out, threads)
    fused = {op: n for op, n in after.items() if op not in before}
    return dict(facts, nodes_before=before.total(), nodes_after=after.total(), fused_ops=fused)


def _child_main(argv: list[str]) -> int:
    import argparse
    import warnings

    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(prog="python -m workbench.onnx_export")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--model-id", required=True)
    parser.add_argument("--fingerprint", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--source", type=Path)
    parser.add_argument("--threads", type=int, default=_cpu_count())
    args = parser.parse_args(argv)
    global _PROGRESS_OUT
    _PROGRESS_OUT = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # the exporter's own chatter (Python and C level) goes to the log, not the pipe
    sys.stdout = sys.stderr
    start = time.perf_counter()
    if args.variant == "fp32":
        facts = _child_fp32(args.model_dir, args.out, args.threads)
    elif args.variant == "fused":
        facts = _child_fused(args.model_dir, args.source, args.out, args.threads)
    else:
        facts = _child_int8(args.model_dir, args.source, args.out, args.threads)
    _say(0.98, 1.0, "hashing the files")
    manifest = dict(
        model_id=args.model_id,
        variant=args.variant,
        format=EXPORT_FORMAT,
        versions=library_versions(),
        model_fingerprint=args.fingerprint,
        export_seconds=time.perf_counter() - start,
        threads=args.threads,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        inputs=["input_ids", "attention_mask", "position_ids"] + past_names(facts["num_layers"], "past_key_values"),
        outputs=["logits"] + past_names(facts["num_layers"], "present"),
        **facts,
        files=_describe_files(args.out),
    )
    (args.out / EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
