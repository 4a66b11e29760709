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
ORT_GENAI = "onnxruntime-genai"  # onnxruntime-genai's builder graph (int4, re-quantized) and its loop; native
ORT_GENAI_FP32 = "onnxruntime-genai-fp32"  # its builder's fp32 graph (onnxruntime-gqa's source) and its loop; native
GENAI_BACKENDS = (ORT_GENAI, ORT_GENAI_FP32)
# backend name -> export variant
BACKEND_VARIANTS = {ORT_FP32: "fp32", ORT_FUSED: "fused", ORT_INT8: "int8", ORT_Q4: "q4", ORT_Q4A8: "q4a8",
                    ORT_GQA: "gqa", ORT_GQA_Q4: "gqa_q4", ORT_GQA_Q4A8: "gqa_q4a8"}
GGUF_BACKENDS = (ORT_Q4, ORT_Q4A8, ORT_GQA_Q4, ORT_GQA_Q4A8, LLAMACPP)  # need the GGUF the model was installed from
ALL_BACKENDS = (TORCH, ORT_FP32, ORT_FUSED, ORT_INT8, ORT_Q4, ORT_Q4A8, ORT_GQA, ORT_GQA_Q4, ORT_GQA_Q4A8, LLAMACPP,
                *GENAI_BACKENDS)
GQA_HEAD_MULTIPLE = 16  # GroupQueryAttention on the CPU needs a head size that is a multiple of 16
_MODULES = {TORCH: "torch_eager", LLAMACPP: "llamacpp", **{name: "genai" for name in GENAI_BACKENDS},
            **{name: "ort" for name in BACKEND_VARIANTS}}


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


def genai_installed() -> bool:
    """Whether ``onnxruntime-genai`` (the builder route and its backend) is importable (found
    without importing it)."""
    return importlib.util.find_spec("onnxruntime_genai") is not None


def _config_dict(model, store=None) -> dict | None:
    """A loaded model's ``config.json`` as a dict; for a card, the one installed in ``store``
    (when given and installed); None when neither is at hand."""
    import json
    from pathlib import Path

    folder = getattr(model, "path", None)
    if folder is None and store is not None:
        try:
            folder = store.path(model.id)
        except WorkbenchError:  # not installed (or damaged): nothing to read
            return None
    if folder is None:
        return None
    try:
        return json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def head_size(model, store=None) -> int | None:
    """The attention head size of a loaded model or a card: the card's ``head_dim`` field when
    it has one, else the installed ``config.json`` (a loaded model's own, or the entry in
    ``store``); None when unknown."""
    card = getattr(model, "card", model)
    declared = card.extra.get("head_dim") if isinstance(card.extra, dict) else None
    if isinstance(declared, int) and not isinstance(declared, bool):
        return declared
    config = _config_dict(model, store)
    if config is None:
        return None
    text = config.get("text_config") or config
    if text.get("head_dim"):
        return int(text["head_dim"])
    if text.get("hidden_size") and text.get("num_attention_heads"):
        return int(text["hidden_size"]) // int(text["num_attention_heads"])
    return None


def gqa_capable(model, store=None) -> bool:
    """Whether ONNX Runtime's own decode graph (the builder route: ``onnxruntime-gqa*``,
    ``onnxruntime-genai`` and ``onnxruntime-genai-fp32``) is listed for a model: its card says
    ``onnx``, onnxruntime-genai is importable, the architecture is one the builder makes, and the
    head size is known and a multiple of 16."""
    card = getattr(model, "card", model)
    if not (card.can("onnx") and genai_installed()):
        return False
    from ...onnx.genai_graph import BUILDER_ARCHITECTURES

    if card.architecture not in BUILDER_ARCHITECTURES:
        return False
    head = head_size(model, store)
    return head is not None and head % GQA_HEAD_MULTIPLE == 0


def available_backends(model, store=None) -> list[str]:
    """Backend names a loaded model (or a ``ModelCard``) can run on: torch always; ONNX Runtime
    when its card says ``onnx``, its q4 variants and llama.cpp when it comes from a GGUF
    (``llamacpp`` is listed even when the optional package is missing: making it says how to add
    it). ONNX Runtime's own decode graph (``onnxruntime-gqa``, with ``-gqa-q4`` / ``-gqa-q4a8``
    from a GGUF), ``onnxruntime-genai`` and ``onnxruntime-genai-fp32`` are listed when
    ``gqa_capable``: a card alone needs a ``head_dim`` field, or ``store`` to read its installed
    config. The ONNX ones export on first
    use (minutes for a real model, cached afterwards): ``workbench.onnx.cached_export`` tells
    whether that wait is ahead."""
    card = getattr(model, "card", model)
    names = [TORCH]
    gguf = from_gguf(card)
    if card.can("onnx"):
        names += [ORT_FP32, ORT_FUSED, ORT_INT8] + ([ORT_Q4, ORT_Q4A8] if gguf else [])
        if gqa_capable(model, store):
            names += [ORT_GQA] + ([ORT_GQA_Q4, ORT_GQA_Q4A8] if gguf else []) + list(GENAI_BACKENDS)
    return names + ([LLAMACPP] if gguf else [])


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


def _register_native() -> None:
    from .isolated import register_native

    for name in GENAI_BACKENDS:  # one build hook, the precision told by the name
        register_native(name, "workbench.runtime.backends.genai:build", applies=gqa_capable)


_register_native()
