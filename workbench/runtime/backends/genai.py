"""onnxruntime-genai as comparison backends: the field's reference for ONNX Runtime, run beside
the workbench's own graphs. Two backends, one code path, told apart by the builder's precision
(``Flavor``, one per backend in ``FLAVORS``):

- ``onnxruntime-genai``: its builder's ``int4`` graph with its CPU defaults: the builder
  **re-quantizes** the fp32 weights itself (round-to-nearest, symmetric, block 32,
  ``accuracy_level`` 4, i.e. int8 activations inside ``MatMulNBits``, the LM head in int4 too).
  Its weights are therefore not the GGUF's blocks and its logits drift from torch by design: it
  is judged on greedy tokens only (variant ``genai_int4``);
- ``onnxruntime-genai-fp32``: its builder's ``fp32`` graph, the very graph ``onnxruntime-gqa``
  is made from (the workbench rewrites it to its interface: position ids, rotary before GQA, an
  additive padding bias, the last position's logits; see ``workbench.onnx.genai_graph``). The
  same fp32 weights as torch, so it is judged like the workbench's fp32 variants (variant
  ``genai_fp32``: logits within the fp32 bar, every greedy token equal). On Gemma 3 its logits
  miss that bar (its builder rounds the embedding scale √hidden to two decimals; the ``gqa``
  route sets it exactly) while its greedy tokens stay equal. Beside ``onnxruntime-gqa`` it
  measures our loop against genai's on the same graph.

Both run onnxruntime-genai's product end to end:

- **its builder's graph** of the model (``onnxruntime_genai.models.builder``, through
  ``workbench.onnx.genai_graph.build``), as the builder writes it;
- **its C++ loop**: ``og.Model`` / ``og.Generator`` with ``append_tokens`` (which runs the
  model) and ``get_logits`` (the last position's logits, float32).

Each graph is built once per model into the store, at
``store.export_root(id) / "genai-<precision>-<onnxruntime-genai version>"``, through the install
primitive (``store.install.installing``: the export lock, a staging folder, one rename), by a
child process (``python -m workbench.runtime.backends.genai MODEL_DIR OUT PRECISION``), and
rebuilt when the installed entry changes (``Store.fingerprint``, kept in ``genai-build.json``).

``GenaiBackend`` (what runs in the backend's own child process, ``isolated.IsolatedBackend``)
implements the ``Backend`` protocol with numpy in and out. One ``og.Generator`` holds one
sequence's KV cache; the state of a sequence is the tuple of token ids fed so far. A step
continues the generator when the state is the one it holds, rewinds it when the state is a prefix
of what it holds, and otherwise starts a new generator and feeds the whole sequence (one
prefill): interleaved sequences stay correct, just slower. It does not batch.

``onnxruntime-genai`` is the ``bench`` extra; without it ``build`` raises with the install line.
Importing this module imports neither torch nor onnxruntime-genai.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...common import cpu_count, quiet
from ...errors import ExportError, InvalidInputError, UnsupportedModelError, WorkbenchError
from . import ORT_GENAI, ORT_GENAI_FP32


@dataclass(frozen=True)
class Flavor:
    """One onnxruntime-genai backend: the builder precision it runs and how it is described and judged."""

    name: str  # the backend's name
    precision: str  # the builder's precision (its ``-p``): the graph folder's name too
    variant: str  # what parity judges it as (``latency.parity.THRESHOLDS``)
    quantization: str
    note: str
    crash_hint: str  # added to a crash's message: what runs the same thing safely


def _crash_hint(precision: str, safe: str) -> str:
    return (f"onnxruntime-genai's own runtime died; the workbench's {safe} in the workbench's process-safe loop. "
            f"Delete the built graph (exports/<model>/genai-{precision}-*) to build it again.")


INT4 = Flavor(
    ORT_GENAI, "int4", "genai_int4",  # re-quantized weights and activations: tokens only
    quantization=("int4 made by onnxruntime-genai's builder from the fp32 weights (round-to-nearest, symmetric, "
                  "block 32, accuracy level 4: int8 activations; int4 LM head); not the GGUF's blocks"),
    note="re-quantized by its builder: judged on greedy tokens",
    crash_hint=_crash_hint("int4", "onnxruntime-gqa-q4 and -gqa-q4a8 run the same kernels"))
FP32 = Flavor(
    ORT_GENAI_FP32, "fp32", "genai_fp32",  # the same fp32 weights as torch: judged as fp32
    quantization="none: fp32 weights as the store saved them (the builder graph onnxruntime-gqa is rewritten from)",
    note="the same fp32 weights as torch: judged as fp32 (logits within the fp32 bar, greedy tokens equal)",
    crash_hint=_crash_hint("fp32", "onnxruntime-gqa runs the same builder graph"))
FLAVORS = {f.name: f for f in (INT4, FP32)}  # backend name -> flavor
_BY_PRECISION = {f.precision: f for f in FLAVORS.values()}

# the int4 backend's, as before the fp32 one joined
VARIANT, PRECISION, QUANTIZATION, CRASH_HINT = INT4.variant, INT4.precision, INT4.quantization, INT4.crash_hint
BUILD_FILE = "genai-build.json"  # written last: a folder without it is not a finished build
MAX_CONTEXT = 4096  # the generator allocates its KV buffer for max_length up front
BUILD_TIMEOUT_S = 3600.0
INSTALL_HINT = "`.venv/bin/pip install -e '.[bench]'` (onnxruntime-genai==0.18.0)"


def flavor(precision: str) -> Flavor:
    """The backend that runs the builder's ``precision`` graph; raises ``InvalidInputError``
    listing the ones there are."""
    try:
        return _BY_PRECISION[precision]
    except KeyError:
        raise InvalidInputError(f"No onnxruntime-genai backend runs the builder's {precision!r} graph: pick one of "
                                f"{', '.join(_BY_PRECISION)}.") from None


def genai_version() -> str | None:
    """The installed onnxruntime-genai's version (read from its metadata, not imported), or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnxruntime-genai")
    except PackageNotFoundError:
        return None


def graph_dir(store, model_id: str, precision: str = PRECISION) -> Path:
    """Where the builder's ``precision`` graph of ``model_id`` lives in ``store`` (one folder per
    precision and onnxruntime-genai version)."""
    return store.export_root(model_id) / f"genai-{flavor(precision).precision}-{genai_version()}"


def _built(target: Path, fingerprint: str, precision: str) -> bool:
    try:
        facts = json.loads((target / BUILD_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return (facts.get("model_fingerprint") == fingerprint and facts.get("precision") == precision
            and (target / "model.onnx").is_file())


def _check_build(stage: Path) -> None:
    for name in ("model.onnx", "genai_config.json"):
        if not (stage / name).is_file():
            raise ExportError(f"onnxruntime-genai's builder wrote no {name}; build again, or report the model.")


def ensure_graph(store, model_id: str, progress=quiet, timeout_s: float = BUILD_TIMEOUT_S,
                 precision: str = PRECISION) -> Path:
    """The builder's ``precision`` graph (``int4`` or ``fp32``) of an installed model: the one
    built before when the entry is unchanged, else built now (minutes for a real model) in a
    child process and put in place in one rename. Raises ``UnsupportedModelError`` without
    onnxruntime-genai, ``ExportError`` when the builder fails (nothing is left behind)."""
    from ...store.install import installing

    spec = flavor(precision)
    if genai_version() is None:
        raise UnsupportedModelError(f"The {spec.name} backend needs the onnxruntime-genai package: {INSTALL_HINT}.")
    card = store.card(model_id)
    model_dir = store.path(card.id)
    fingerprint = store.fingerprint(card.id)
    target = graph_dir(store, card.id, spec.precision)
    if _built(target, fingerprint, spec.precision):
        return target
    with installing(store, "genai", f"{card.id}-{spec.precision}", target, lock=f"export-{card.id}",
                    what=f"building onnxruntime-genai's {spec.precision} graph of {card.id}",
                    fix=f"make the {spec.name} backend again") as inst:
        if _built(target, fingerprint, spec.precision):  # another process built it while this one waited for the lock
            return target
        how = "its builder re-quantizes; minutes" if spec.precision != "fp32" else "minutes"
        progress(0.1, f"building onnxruntime-genai's {spec.precision} graph ({how})")
        _run_builder(model_dir, inst.stage, timeout_s, spec.precision)
        progress(0.8, "placing the built graph into the store")
        inst.commit({"model_id": card.id, "model_fingerprint": fingerprint, "precision": spec.precision,
                     "onnxruntime_genai": genai_version(), "quantization": spec.quantization},
                    manifest_name=BUILD_FILE, verify=_check_build)
    return target


def _run_builder(model_dir: Path, out: Path, timeout_s: float, precision: str) -> None:
    """Run ``genai_graph.build`` at ``precision`` in a child process (the builder loads the whole model)."""
    package_root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(package_root), os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run([sys.executable, "-m", __name__, str(model_dir), str(out), precision], check=False, env=env,
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as err:
        raise ExportError(f"onnxruntime-genai's builder did not finish within {timeout_s:g} s; nothing was kept. "
                          "Build again on a less loaded machine.") from err
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-4:])
        raise ExportError(f"onnxruntime-genai's builder failed (exit status {done.returncode}); nothing was kept. "
                          f"Its last output: {tail}")


class GenaiBackend:
    """``Backend`` over one onnxruntime-genai model (batch 1, CPU), numpy in and out; the child's
    side. ``precision`` is the builder's precision ``graph`` was built at: it names the backend
    (``FLAVORS``) and the variant parity judges it as."""

    device = "cpu"

    def __init__(self, graph: str, context: int, threads: int | None = None, precision: str = PRECISION):
        import onnxruntime_genai as og

        self.flavor = flavor(precision)
        self.name, self.variant = self.flavor.name, self.flavor.variant
        self.og, self.graph = og, Path(graph)
        self.threads = int(threads or cpu_count())
        self.context = int(min(context, MAX_CONTEXT))
        config = og.Config(str(self.graph))
        config.overlay(json.dumps({"model": {"decoder": {"session_options": {
            "intra_op_num_threads": self.threads, "inter_op_num_threads": 1}}}}))
        self.model = og.Model(config)
        from ...onnx.spec import weight_bytes_per_token

        self._weight_bytes = weight_bytes_per_token(self.graph / "model.onnx")
        self._lock = threading.Lock()
        self._generator = None
        self._held: tuple[int, ...] = ()  # the tokens the generator's cache holds now

    def settings(self) -> dict:
        return {"backend": self.name, "device": "cpu", "providers": ["CPUExecutionProvider"], "threads": self.threads,
                "variant": self.variant, "graph": str(self.graph / "model.onnx"), "precision": self.flavor.precision,
                "graph_optimization": "onnxruntime-genai's builder graph, its own loop",
                "onnxruntime_genai": self.og.__version__, "context": self.context,
                "quantization": self.flavor.quantization, "note": self.flavor.note}

    def weight_bytes_per_token(self) -> int:
        return self._weight_bytes

    def _new_generator(self):
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(max_length=self.context)
        return self.og.Generator(self.model, params)

    def _feed(self, before: tuple[int, ...], new: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, ...]]:
        full = before + new
        if len(full) > self.context:
            raise WorkbenchError(f"{self.name} was opened with a {self.context}-token context; this sequence "
                                 f"needs {len(full)}. Use a shorter prompt or fewer new tokens.")
        with self._lock:
            if self._generator is not None and before == self._held:
                todo = new
            elif self._generator is not None and before and self._held[: len(before)] == before:
                self._generator.rewind_to(len(before))  # an earlier state of the sequence it holds
                todo = new
            else:  # another sequence used the generator since: feed this one again
                self._generator = self._new_generator()
                todo = full
            self._held = ()  # unknown until the append below has run
            self._generator.append_tokens(np.asarray([todo], dtype=np.int32))
            logits = np.array(self._generator.get_logits()[0, -1], dtype=np.float32)  # (V,)
            self._held = full
        return logits, full

    def prefill(self, input_ids) -> tuple[np.ndarray, Any]:
        """``input_ids``: ``(1, T)`` int64 (numpy or torch)."""
        return self._feed((), tuple(int(t) for t in input_ids[0].tolist()))

    def step(self, token_id: int, state: Any) -> tuple[np.ndarray, Any]:
        return self._feed(tuple(state), (int(token_id),))

    def synchronize(self) -> None:
        return None


def build(model, name: str, progress, device: str | None, threads: int | None, store):
    """The registry's hook for every name in ``FLAVORS``: the builder's graph at that backend's
    precision (built once into the store) run by onnxruntime-genai's loop in a child process
    (``isolated.IsolatedBackend``)."""
    from . import GQA_HEAD_MULTIPLE, head_size
    from .isolated import IsolatedBackend

    if name not in FLAVORS:
        raise WorkbenchError(f"{name!r} is not an onnxruntime-genai backend: pick one of {', '.join(FLAVORS)}.")
    spec = FLAVORS[name]
    if device and device.startswith("cuda"):
        raise WorkbenchError(f"The {name} comparison backend runs on the CPU here; pick device cpu.")
    if not model.card.can("onnx"):
        raise UnsupportedModelError(f"{model.card.name} cannot be exported to ONNX, so {name} has nothing to run; "
                                    "pick another backend.")
    from ...onnx.genai_graph import BUILDER_ARCHITECTURES, supports

    config = json.loads((Path(model.path) / "config.json").read_text(encoding="utf-8"))
    if not supports(config):
        raise UnsupportedModelError(f"onnxruntime-genai's builder route covers {', '.join(BUILDER_ARCHITECTURES)}, "
                                    f"not {config.get('architectures')}; pick another backend.")
    head = head_size(model)
    if head is None or head % GQA_HEAD_MULTIPLE:
        raise UnsupportedModelError(f"onnxruntime-genai's GroupQueryAttention on the CPU needs a head size that is a "
                                    f"multiple of 16; this model's is {head}. Pick onnxruntime-fused instead.")
    target = ensure_graph(store, model.card.id, progress, precision=spec.precision)
    progress(0.9, "starting onnxruntime-genai in its own process")
    backend = IsolatedBackend(name, f"{__name__}:GenaiBackend",
                              {"graph": str(target), "context": int(model.context_length),
                               "threads": int(threads or cpu_count()), "precision": spec.precision},
                              hint=spec.crash_hint)
    progress(1.0, f"{name} ready")
    return backend


def _build_main(argv: list[str]) -> int:
    """``python -m workbench.runtime.backends.genai MODEL_DIR OUT [PRECISION]``: the builder, in
    this process (``PRECISION`` defaults to int4)."""
    from ...onnx import genai_graph

    model_dir, out, precision = argv[0], argv[1], argv[2] if len(argv) > 2 else PRECISION
    genai_graph.build(Path(model_dir), Path(out), flavor(precision).precision)
    return 0


if __name__ == "__main__":
    sys.exit(_build_main(sys.argv[1:]))
