"""ONNX Runtime backends for the generation loop.

``OrtBackend`` runs a ``workbench.onnx`` export through an ``InferenceSession`` and implements the
``workbench.runtime.backends.Backend`` protocol: ``prefill`` feeds the prompt with empty past tensors, ``step`` feeds
one token and the previous ``present`` tensors. The KV cache stays in ONNX Runtime's own buffers
(``OrtValue``\\s) and is never copied by this module. On the CPU one ``run_with_ortvaluevector``
call per token feeds and fetches them as C++ vectors (``run_with_ort_values`` costs more Python
work a token). The Python work around that call is what separates a Python loop from
onnxruntime-genai's C++ one, so it is kept small. On a GPU an ``IOBinding`` keeps the cache
in GPU memory.

Settings are explicit and recorded on the backend (``settings()``): execution providers, intra-op
threads (default: this machine's core count; more threads than cores is several times slower),
graph optimization level, and two settings of CPU sessions: one process-wide memory arena
(``session.use_env_allocators``, as onnxruntime-genai sets up) and pool threads that stop spinning
when a run ends (``session.force_spinning_stop``: otherwise they keep a core busy while Python
picks the next token). Both shorten decode steps a little. CUDA needs the optional
``onnxruntime-gpu`` package; asking for it without one falls back to the CPU provider and says so
in ``note``.

Sessions are cached per (graph, device, threads) and shared: ``InferenceSession.run`` is
thread-safe and each call builds its own binding and cache, as ``TorchBackend`` does.

Picked by name through ``workbench.runtime.backends.make_backend`` (this module is imported only
then).
"""
from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.capi import _pybind_state as _ort_c
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_errors

from ...common import cpu_count
from ...errors import WorkbenchError
from ...onnx.cache import OnnxExport, export_model
from ...onnx.spec import weight_bytes_per_token
from . import BACKEND_VARIANTS

# onnxruntime's own error classes derive from Exception directly
ORT_ERRORS = (
    _ort_errors.Fail, _ort_errors.InvalidGraph, _ort_errors.InvalidArgument, _ort_errors.NoSuchFile,
    _ort_errors.RuntimeException, _ort_errors.NotImplemented, _ort_errors.InvalidProtobuf, RuntimeError,
)
_SESSIONS: dict[tuple, tuple[ort.InferenceSession, tuple[str, ...], str]] = {}
_SESSIONS_LOCK = threading.Lock()


def cuda_provider_available() -> bool:
    return "CUDAExecutionProvider" in ort.get_available_providers()


def _providers(device: str) -> tuple[list, str]:
    """Providers for ``device`` and a note when the wish could not be met."""
    if device.startswith("cuda"):
        if cuda_provider_available():
            _preload_cuda_libraries()
            # TF32 off: fp32 graphs are checked against torch, whose fp32 matmuls don't use it
            options = {"device_id": str(_device_index(device)), "use_tf32": "0"}
            return [("CUDAExecutionProvider", options), "CPUExecutionProvider"], ""
        return ["CPUExecutionProvider"], (
            "CUDA was asked for, but this onnxruntime has no CUDA execution provider; running on "
            "the CPU instead. Install the GPU build (`pip install .[gpu]`, onnxruntime-gpu) to use the GPU."
        )
    return ["CPUExecutionProvider"], ""


@functools.cache
def _preload_cuda_libraries() -> None:
    """Load the CUDA and cuDNN libraries onnxruntime-gpu needs from the ``nvidia-*`` pip packages
    (the ones torch brings) when they are not on the loader's path; harmless when they are."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            preload()
        except (OSError, RuntimeError):
            pass  # the session start below reports a missing library as a CPU fallback with a note


@functools.cache
def _register_shared_cpu_arena() -> None:
    """One CPU memory arena for every CPU session of this process (default arena settings), as
    onnxruntime-genai sets up: a model's second session reuses the first one's freed blocks."""
    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, -1, -1, -1))


# CPU sessions only: the CUDA path was measured and proven without them; OrtBackend.settings() records them
CPU_SESSION_CONFIG = {"session.force_spinning_stop": "1", "session.use_env_allocators": "1"}


def _device_index(device: str) -> int:
    return int(device.split(":")[1]) if ":" in device else 0


def open_session(export: OnnxExport, device: str = "cpu", threads: int | None = None):
    """A cached ``(session, providers in use, note)`` for an export."""
    threads = int(threads or cpu_count())
    if threads < 1:
        raise WorkbenchError("ONNX Runtime threads must be at least 1.")
    providers, note = _providers(device)
    key = (str(export.onnx_path), export.onnx_path.stat().st_mtime_ns, str(providers), threads)
    with _SESSIONS_LOCK:
        if key in _SESSIONS:
            return _SESSIONS[key]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if providers == ["CPUExecutionProvider"]:
        _register_shared_cpu_arena()
        for name, value in CPU_SESSION_CONFIG.items():
            opts.add_session_config_entry(name, value)
    try:
        session = ort.InferenceSession(str(export.onnx_path), opts, providers=providers)
    except ORT_ERRORS as err:
        raise WorkbenchError(
            f"ONNX Runtime could not open {export.onnx_path} ({type(err).__name__}: {str(err)[:300]}). "
            f"Export again with `workbench export {export.model_id} --variant {export.variant}`."
        ) from err
    in_use = tuple(session.get_providers())
    if device.startswith("cuda") and "CUDAExecutionProvider" not in in_use and not note:
        note = "The CUDA provider failed to start (driver or CUDA libraries missing); running on the CPU."
    entry = (session, in_use, note)
    with _SESSIONS_LOCK:
        return _SESSIONS.setdefault(key, entry)


class _Borrowed(list):
    """C++ OrtValues that borrow numpy arrays, with the arrays (``.arrays``) kept alive beside them."""

    arrays: list


@dataclass
class _State:
    # present.N.key/value of the last call, (1, H, length, D) each, in the order of the past inputs:
    # a list of OrtValues (GPU), or on the CPU the C++ vector that call filled (logits last)
    past: Any
    length: int


class OrtBackend:
    """``Backend`` over an ONNX Runtime session of a KV-cache export: ``prefill``/``step`` for one
    sequence, ``forward`` for a left-padded batch (the server's ``OrtBatchEngine``)."""

    def __init__(self, export: OnnxExport, device: str = "cpu", threads: int | None = None, name: str | None = None):
        self.export = export
        self.name = name or next(n for n, v in BACKEND_VARIANTS.items() if v == export.variant)
        self.threads = int(threads or cpu_count())
        self.session, self.providers, self.note = open_session(export, device, self.threads)
        self.on_gpu = "CUDAExecutionProvider" in self.providers
        self.device = "cuda" if self.on_gpu else "cpu"
        self._ort_device = "cuda" if self.on_gpu else "cpu"
        self._device_id = _device_index(device) if self.on_gpu else 0
        self._past_names = export.input_names[3:]
        self._present_names = export.output_names[1:]
        # the CPU path's run_with_ortvaluevector takes names, C++ values and output devices as lists
        self._feed_names = ["input_ids", "attention_mask", "position_ids", *self._past_names]
        self._fetch_names = [*self._present_names, "logits"]
        cpu = _ort_c.OrtDevice(_ort_c.OrtDevice.cpu(), _ort_c.OrtDevice.default_memory(), 0)
        self._fetch_devices = [cpu] * len(self._fetch_names)
        self._empty = self.empty_cache(1)
        self._run_options = ort.RunOptions()

    def settings(self) -> dict:
        """What this backend runs with, recorded next to every result."""
        return {
            "backend": self.name,
            "device": self.device,
            "providers": list(self.providers),
            "threads": self.threads,
            "variant": self.export.variant,
            "graph": str(self.export.onnx_path),
            "graph_optimization": "ORT_ENABLE_ALL",
            "session_config": self._session_config(),
            "note": self.note,
        }

    def weight_bytes_per_token(self) -> int:
        """Bytes of weights a decode step reads (the graph's initializers, less gathered tables)."""
        return weight_bytes_per_token(self.export.onnx_path)

    def _session_config(self) -> dict:
        options = self.session.get_session_options()
        config = {}
        for name in CPU_SESSION_CONFIG:
            try:
                config[name] = options.get_session_config_entry(name)
            except RuntimeError:  # not set on this session
                pass
        return config

    def empty_cache(self, rows: int):
        """A cache of no positions for ``rows`` sequences, to feed ``forward`` as ``past``."""
        return self.cache_from_arrays([np.zeros((rows, self.export.kv_heads, 0, self.export.head_dim), np.float32)
                                       for _ in self._past_names])

    def cache_arrays(self, past) -> list[np.ndarray]:
        """A cache (``forward``'s presents, or ``cache_from_arrays``'s) as host arrays (B, H, L, D),
        one per past input: views on the CPU, copies from a GPU."""
        return [past[i].numpy() for i in range(len(self._past_names))]

    def cache_from_arrays(self, arrays: list[np.ndarray]):
        """Host arrays (B, H, L, D), one per past input, as a cache ``forward`` takes. On the CPU the
        values borrow the arrays (the returned list keeps them alive; views are copied first); on a
        GPU they are copied."""
        if self.on_gpu:
            return [ort.OrtValue.ortvalue_from_numpy(a, self._ort_device, self._device_id) for a in arrays]
        # own every array: a view (a slice of another cache's buffer) would dangle once that cache is freed
        arrays = [a if a.flags.owndata and a.flags.c_contiguous and a.dtype == np.float32
                  else np.array(a, np.float32, order="C") for a in arrays]
        cache = _Borrowed(_ort_c.OrtValue.ortvalue_from_numpy(a, self._fetch_devices[0]) for a in arrays)
        cache.arrays = arrays
        return cache

    def forward(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray, past) -> tuple[torch.Tensor, Any]:
        """One forward pass of B sequences: ``ids`` and ``positions`` (B, S) and ``mask`` (B, L + S,
        0 = padding) int64 arrays after ``past``, a cache of L positions (an earlier call's presents,
        ``empty_cache`` or ``cache_from_arrays``). Returns the last position's logits (B, V) and the
        presents (the cache of L + S positions)."""
        if not self.on_gpu:
            feeds = _ort_c.OrtValueVector()
            feeds.reserve(len(self._feed_names))
            for array in (ids, mask, positions):  # borrowed, not copied: these arrays outlive the run
                feeds.push_back(_ort_c.OrtValue.ortvalue_from_numpy(array, self._fetch_devices[0]))
            for i in range(len(self._past_names)):
                feeds.push_back(past[i])
            outputs = _ort_c.OrtValueVector()
            self.session.run_with_ortvaluevector(
                self._run_options, self._feed_names, feeds, self._fetch_names, outputs, self._fetch_devices
            )
            logits = outputs[len(self._past_names)].numpy()[:, -1]  # (B, V): a view that keeps its OrtValue alive
            return torch.from_numpy(logits), outputs  # presents first, logits last
        binding = self.session.io_binding()
        binding.bind_cpu_input("input_ids", ids)
        binding.bind_cpu_input("attention_mask", mask)
        binding.bind_cpu_input("position_ids", positions)
        for name, value in zip(self._past_names, past):
            binding.bind_ortvalue_input(name, value)
        binding.bind_output("logits", "cpu")
        for name in self._present_names:
            binding.bind_output(name, self._ort_device, self._device_id)
        self.session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        logits = torch.from_numpy(outputs[0].numpy()[:, -1].copy())  # (B, V)
        return logits, list(outputs[1:])

    def _run(self, ids: np.ndarray, length: int, past) -> tuple[torch.Tensor, _State]:
        """Feed ``ids`` (1, S) after ``length`` cached tokens; return logits (V,) and the state."""
        seq = ids.shape[1]
        mask = np.ones((1, length + seq), np.int64)
        positions = np.arange(length, length + seq, dtype=np.int64)[None]
        logits, present = self.forward(ids, mask, positions, past)
        return logits[0], _State(present, length + seq)

    def prefill(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, Any]:
        ids = np.ascontiguousarray(input_ids.detach().cpu().numpy(), np.int64)  # (1, T)
        if ids.ndim != 2 or ids.shape[0] != 1:
            raise WorkbenchError(f"OrtBackend takes input_ids of shape (1, T), got {tuple(ids.shape)}.")
        return self._run(ids, 0, self._empty)

    def step(self, token_id: int, state: _State) -> tuple[torch.Tensor, Any]:
        return self._run(np.array([[token_id]], np.int64), state.length, state.past)

    def synchronize(self) -> None:
        # run_with_iobinding returns after the outputs are ready, and logits are copied to the
        # host inside _run, so there is nothing in flight to wait for
        return None


def build(model, name: str, progress, device: str | None, threads: int | None, store) -> OrtBackend:
    """The registry's hook (``workbench.runtime.backends.make_backend``): export ``model`` to the
    variant ``name`` runs (cached in the store), then open it."""
    if not model.card.can("onnx"):
        raise WorkbenchError(f"{model.card.name} is not marked as exportable to ONNX; use the torch backend.")
    export = export_model(store, model.card.id, BACKEND_VARIANTS[name], progress)
    return OrtBackend(export, device or model.device, threads, name=name)
