"""Forward-pass backends the generation loop drives interchangeably, and the registry that picks
one by name.

A backend knows how to run the network, nothing about tokenization or sampling:

- ``prefill(input_ids)``: ``input_ids`` is a ``(1, T)`` int64 tensor; returns the next-token
  logits ``(V,)`` as a float32 CPU-or-device torch tensor and an opaque state (the KV cache).
- ``step(token_id, state)``: feeds one token, returns ``(logits (V,), state)``.
- ``synchronize()``: waits for queued device work (clocks are read after it).

The state is created per call, so one backend object can serve several threads at once.

The registry names each backend's module by a dotted path, so listing backends imports no
runtime: ``onnxruntime`` is imported only when an ONNX Runtime backend is made.
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any, Protocol

from ...common import Progress, quiet
from ...errors import WorkbenchError

if TYPE_CHECKING:
    import torch

TORCH = "torch"
ORT_FP32 = "onnxruntime"
ORT_FUSED = "onnxruntime-fused"
ORT_INT8 = "onnxruntime-int8"
ORT_Q4 = "onnxruntime-q4"
ORT_Q4A8 = "onnxruntime-q4a8"
ORT_GQA = "onnxruntime-gqa"  # ONNX Runtime's own decode graph (onnxruntime-genai's builder), fp32
ORT_GQA_Q4 = "onnxruntime-gqa-q4"  # that graph with the GGUF's own blocks, fp32 activations
ORT_GQA_Q4A8 = "onnxruntime-gqa-q4a8"  # the same, int8 activations
LLAMACPP = "llamacpp"
# backend name -> export variant
BACKEND_VARIANTS = {ORT_FP32: "fp32", ORT_FUSED: "fused", ORT_INT8: "int8", ORT_Q4: "q4", ORT_Q4A8: "q4a8",
                    ORT_GQA: "gqa", ORT_GQA_Q4: "gqa_q4", ORT_GQA_Q4A8: "gqa_q4a8"}
GGUF_BACKENDS = (ORT_Q4, ORT_Q4A8, ORT_GQA_Q4, ORT_GQA_Q4A8, LLAMACPP)  # need the GGUF the model was installed from
ALL_BACKENDS = (TORCH, ORT_FP32, ORT_FUSED, ORT_INT8, ORT_Q4, ORT_Q4A8, ORT_GQA, ORT_GQA_Q4, ORT_GQA_Q4A8, LLAMACPP)
_MODULES = {TORCH: "torch_eager", LLAMACPP: "llamacpp", **{name: "ort" for name in BACKEND_VARIANTS}}


class Backend(Protocol):
    name: str
    device: str

    def prefill(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, Any]: ...

    def step(self, token_id: int, state: Any) -> tuple[torch.Tensor, Any]: ...

    def synchronize(self) -> None: ...


def from_gguf(card) -> bool:
    """Whether a card's model comes from a GGUF file (whose blocks the q4 variants and
    llama.cpp use)."""
    return any(s.kind in ("pypi", "local-gguf") for s in card.sources)


def llamacpp_installed() -> bool:
    """Whether the optional ``llama-cpp-python`` is importable (found without importing it)."""
    return importlib.util.find_spec("llama_cpp") is not None


def available_backends(model) -> list[str]:
    """Backend names a loaded model (or a ``ModelCard``) can run on: torch always; ONNX Runtime
    when its card says ``onnx``, its q4 variants and llama.cpp when it comes from a GGUF
    (``llamacpp`` is listed even when the optional package is missing: making it says how to add
    it). The ONNX ones export on first use (minutes for a real model, cached afterwards):
    ``workbench.onnx.cached_export`` tells whether that wait is ahead."""
    card = getattr(model, "card", model)
    names = [TORCH]
    if card.can("onnx"):
        names += [ORT_FP32, ORT_FUSED, ORT_INT8] + ([ORT_Q4, ORT_Q4A8] if from_gguf(card) else [])
    return names + ([LLAMACPP] if from_gguf(card) else [])


def make_backend(
    model,
    name: str = TORCH,
    progress: Progress | None = None,
    device: str | None = None,
    threads: int | None = None,
    store=None,
) -> Backend:
    """A ready ``Backend`` called ``name`` for a loaded ``model``; ONNX ones are exported first
    if needed (``progress(fraction, message)`` reports it). ``device`` defaults to the model's."""
    if name not in _MODULES:
        raise WorkbenchError(f"Unknown backend '{name}': pick one of {', '.join(ALL_BACKENDS)}.")
    module = importlib.import_module(f"{__name__}.{_MODULES[name]}")
    if name == TORCH:
        return module.TorchBackend(model)
    store = store or model.store
    if store is None:
        raise WorkbenchError(f"{model.card.id} was not loaded from a store: pass store= to make an ONNX backend.")
    return module.build(model, name, progress or quiet, device, threads, store)


def backend_settings(backend) -> dict:
    """Recorded settings of any backend (torch: device and intra-op threads)."""
    if hasattr(backend, "settings"):
        return backend.settings()
    import torch

    return {
        "backend": backend.name,
        "device": backend.device,
        "providers": [],
        "threads": torch.get_num_threads(),
        "variant": "fp32",
        "graph": "eager (transformers, sdpa attention)",
        "graph_optimization": "none",
        "note": "",
    }
