"""llama.cpp as a comparison backend (``llamacpp``): the model's own GGUF file, the one the store
installed it from, run by ``llama-cpp-python`` with the same thread count as the other backends,
in a child process of its own (``isolated.IsolatedBackend``): a crash inside llama.cpp is
reported as this backend's failure, with its signal, and the benchmark, the app or the server
that drove it goes on.

``LlamaCppBackend`` (what runs in the child) implements the ``Backend`` protocol over llama.cpp's
single KV cache, with numpy in and out: the state of a sequence is the tuple of token ids fed so
far. A step continues the cache when the state is the one the cache holds, and otherwise feeds
the whole sequence again (one prefill), so interleaved sequences stay correct, just slower.
Logits are read from llama.cpp's output buffer after each ``llama_decode`` (the last position
only), as float32.

Extra buffer types (llama.cpp's weight repacking, e.g. the AMX buffer type) crashed at the first
evaluation on an AMX-capable CPU (in ``ggml_backend_amx_mul_mat``) with a native build, so they
are off by default where the CPU has AMX (``amx_int8``/``amx_tile``) and the build has its AMX
kernels (``llama_print_system_info``), on elsewhere; ``WORKBENCH_LLAMACPP_EXTRA_BUFTS=1`` (or
``0``) decides instead. ``llama-cpp-python`` 0.3.x has no ``Llama(...)`` argument for them (unknown
keywords are swallowed by its ``**kwargs``): the field is ``llama_model_params.use_extra_bufts``,
set here on the defaults ``Llama`` starts from, inside the child only.

``llama-cpp-python`` is an optional extra that compiles llama.cpp on install (5-11 minutes on 2
cores with only the library built, see ``hints.INSTALL_HINT``); it is imported only in the child.
"""
from __future__ import annotations

import contextlib
import inspect
import os
import threading
from typing import Any

import numpy as np

from ...common import cpu_count
from ...errors import WorkbenchError
from . import LLAMACPP, from_gguf, llamacpp_installed
from .hints import INSTALL_HINT

MAX_CONTEXT = 4096  # llama.cpp allocates the whole KV cache up front
EXTRA_BUFTS_ENV = "WORKBENCH_LLAMACPP_EXTRA_BUFTS"
AMX_FLAGS = ("amx_int8", "amx_tile", "amx_bf16")
CRASH_HINT = (
    "On a CPU with AMX, llama.cpp's extra buffer types crashed at the first evaluation in its AMX kernels: run with "
    f"{EXTRA_BUFTS_ENV}=0 (the default where the CPU and the build have AMX), or build llama-cpp-python without AMX, "
    "which needs GGML_NATIVE off (a native build compiles the AMX kernels whatever GGML_AMX_* say): "
    '(CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON '
    '-DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"); '
    "docs/latency.md says more."
)


def build_has_amx(system_info: str | None = None) -> bool:
    """Whether the installed llama.cpp was compiled with its AMX kernels (``AMX_INT8 = 1`` in
    ``llama_print_system_info()``; ``system_info`` given, that text instead). Imports llama_cpp:
    call it in the child."""
    if system_info is None:
        try:
            import llama_cpp.llama_cpp as native
        except ImportError:  # cannot tell: the safe answer
            return True
        system_info = native.llama_print_system_info().decode(errors="replace")
    return "AMX_INT8 = 1" in system_info


def extra_bufts_default(flags: list[str] | None = None, build_amx: bool | None = None) -> bool:
    """Whether to let llama.cpp use its extra buffer types: the environment variable when set,
    else off where both the CPU has AMX (``flags``: the CPU's flags, read from /proc/cpuinfo when
    None) and the build has AMX kernels (``build_amx``, ``build_has_amx()`` when None), on
    elsewhere: a build made without AMX runs them on an AMX CPU."""
    value = os.environ.get(EXTRA_BUFTS_ENV, "").strip().lower()
    if value in ("1", "true", "on", "yes"):
        return True
    if value in ("0", "false", "off", "no"):
        return False
    if flags is None:
        from ...latency.environment import cpu_flags

        flags = cpu_flags()
    if not any(f in flags for f in AMX_FLAGS):
        return True
    return not (build_has_amx() if build_amx is None else build_amx)


@contextlib.contextmanager
def _model_defaults(extra_bufts: bool):
    """``llama_model_default_params()`` with ``use_extra_bufts`` set, while ``Llama`` is made."""
    import llama_cpp.llama_cpp as native

    original = native.llama_model_default_params

    def defaults():
        params = original()
        if hasattr(params, "use_extra_bufts"):
            params.use_extra_bufts = extra_bufts
        return params

    native.llama_model_default_params = defaults
    try:
        yield
    finally:
        native.llama_model_default_params = original


def open_llama(gguf_path: str, context: int, threads: int, extra_bufts: bool):
    """A ``llama_cpp.Llama`` over ``gguf_path`` (batch 1, CPU) with extra buffer types on or off."""
    from llama_cpp import Llama

    options = {"model_path": str(gguf_path), "n_ctx": context, "n_batch": 512, "n_threads": threads,
               "n_threads_batch": threads, "logits_all": False, "verbose": False}
    if "use_extra_bufts" in inspect.signature(Llama.__init__).parameters:  # a release that takes it
        return Llama(**options, use_extra_bufts=extra_bufts)
    with _model_defaults(extra_bufts):
        return Llama(**options)


class LlamaCppBackend:
    """``Backend`` over one ``llama_cpp.Llama`` (batch 1, CPU), numpy in and out; the child's side."""

    name = LLAMACPP
    device = "cpu"
    variant = "gguf"  # what parity judges it as (tokens only: its dot products quantize activations)

    def __init__(self, gguf_path, context: int, threads: int | None = None, extra_bufts: bool | None = None):
        self.threads = int(threads or cpu_count())
        self.gguf_path = gguf_path
        self.context = int(min(context, MAX_CONTEXT))
        self.extra_bufts = extra_bufts_default() if extra_bufts is None else bool(extra_bufts)
        self.llm = open_llama(gguf_path, self.context, self.threads, self.extra_bufts)
        self.vocab = self.llm.n_vocab()
        self._lock = threading.Lock()
        self._held: tuple[int, ...] = ()  # the tokens llama.cpp's cache holds now

    def settings(self) -> dict:
        import llama_cpp

        return {"backend": self.name, "device": "cpu", "providers": [], "threads": self.threads,
                "variant": "gguf", "graph": str(self.gguf_path), "graph_optimization": "llama.cpp",
                "llama_cpp_python": llama_cpp.__version__, "context": self.context,
                "use_extra_bufts": self.extra_bufts, "note": ""}

    def _feed(self, before: tuple[int, ...], new: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, ...]]:
        if len(before) + len(new) > self.context:
            raise WorkbenchError(f"llama.cpp was opened with a {self.context}-token context; this sequence "
                                 f"needs {len(before) + len(new)}.")
        full = before + new
        with self._lock:
            if before is self._held or before == self._held:
                todo = new
            else:  # another sequence used the cache since: feed this one again
                self.llm.reset()
                todo = full
            self.llm.eval(list(todo))
            logits = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.vocab,)).copy()
            self._held = full
        return logits, full  # (V,) float32

    def prefill(self, input_ids) -> tuple[np.ndarray, Any]:
        """``input_ids``: ``(1, T)`` int64 (numpy or torch)."""
        return self._feed((), tuple(int(t) for t in input_ids[0].tolist()))

    def step(self, token_id: int, state: Any) -> tuple[np.ndarray, Any]:
        return self._feed(state, (int(token_id),))

    def synchronize(self) -> None:
        return None


def build(model, name: str, progress, device: str | None, threads: int | None, store):
    """The registry's hook: the model's GGUF (fetched again if the entry lacks it) opened by
    llama.cpp in a child process (``isolated.IsolatedBackend``)."""
    from .isolated import IsolatedBackend

    if not from_gguf(model.card):
        raise WorkbenchError(f"{model.card.name} does not come from a GGUF file, so llama.cpp has nothing to run; "
                             "pick a model installed from a GGUF.")
    if not llamacpp_installed():
        raise WorkbenchError(f"The llamacpp backend needs the optional llama-cpp-python package: {INSTALL_HINT}.")
    if device and device.startswith("cuda"):
        raise WorkbenchError("The llamacpp comparison backend runs on the CPU here; pick device cpu.")
    from ...onnx.gguf_blocks import gguf_bytes_per_token

    path = store.gguf_file(model.card.id, progress)
    progress(0.9, "starting llama.cpp in its own process")
    return IsolatedBackend(
        LLAMACPP, f"{__name__}:LlamaCppBackend",
        {"gguf_path": str(path), "context": int(model.context_length), "threads": int(threads or cpu_count()),
         "extra_bufts": None},  # decided in the child (extra_bufts_default reads the build there)
        hint=CRASH_HINT, weight_bytes=gguf_bytes_per_token(path),
    )
