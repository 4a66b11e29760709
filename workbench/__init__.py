"""GPT Store Workbench: pick a model from a local store, generate with it, look inside it, and
time it under PyTorch and ONNX Runtime.

    from workbench import Store
    model = Store().download_model("smollm2-135m-instruct")
    model.generate("The capital of France is").text

The package, by concern (each subpackage's docstring states its contract):

- ``store``: the catalog of cards and the on-disk store (no torch).
- ``runtime``: devices, loading into one bounded cache, backends by name, sampling, generation.
- ``onnx``: ONNX exports with a KV cache, made in a child process and cached in the store.
- ``latency``: statistics, the benchmark harness, parity against torch, stored speeds.
- ``attention``: attention maps, summaries, attention while generating, ablation, score maths.
- ``views``: plotly figures and HTML (no torch); ``cli``: the ``workbench`` command.
- ``common`` and ``errors``: leaves every part may import.

The names below are imported on first use, so ``import workbench`` stays cheap.
"""
from __future__ import annotations

from . import deprecated
from .common import lazy_exports

deprecated.install()

_NAMES = {
    **dict.fromkeys(("Store", "ModelCard", "StoreEntry"), ".store"),
    **dict.fromkeys(("Model", "load_model", "unload", "Generation", "GenerationResult", "generate",
                     "make_backend", "available_backends"), ".runtime"),
    **dict.fromkeys(("WorkbenchError", "UnknownModelError", "ModelNotInstalledError", "InvalidInputError"), ".errors"),
}
__getattr__ = lazy_exports(__name__, _NAMES)
__all__ = sorted(_NAMES)
