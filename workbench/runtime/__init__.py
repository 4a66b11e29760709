"""Running store models: where (``devices``), loading into one bounded cache (``loading``),
interchangeable forward-pass backends picked by name (``backends``), turning logits into tokens
(``sampling``) and the generation loop (``generation``).

Names are importable from the package (``from workbench.runtime import load_model``); each
submodule is imported on first use, so ``workbench.runtime.backends`` can be listed without torch.
"""
from __future__ import annotations

from ..common import lazy_exports

_NAMES = {
    **dict.fromkeys(("available_devices", "resolve_device", "set_threads"), ".devices"),
    **dict.fromkeys(("Model", "cached_models", "load_model", "max_cached_models", "unload"), ".loading"),
    **dict.fromkeys(("Backend", "ALL_BACKENDS", "available_backends", "backend_settings", "make_backend"), ".backends"),
    **dict.fromkeys(("argmax", "choose", "softmax", "softmax_top"), ".sampling"),
    **dict.fromkeys(("Generation", "GenerationConfig", "GenerationResult", "TokenInfo", "build_prompt",
                     "generate", "make_config"), ".generation"),
}
__getattr__ = lazy_exports(__name__, _NAMES)
__all__ = sorted(_NAMES)
