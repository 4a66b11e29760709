"""How well a model predicts text it was not trained on.

- ``evaluation``: ``perplexity()``, strided sliding-window perplexity on a dataset's held-out split, on torch and
  on every ONNX Runtime variant, with the mean KL divergence against torch fp32 (imports torch).
- ``results``: results kept in the store (``bench/quality.json``); reading needs no torch.
"""
from ..common import lazy_exports

_NAMES = {
    **dict.fromkeys(("PerplexityResult", "perplexity"), ".evaluation"),
    **dict.fromkeys(("record_quality", "measured_quality"), ".results"),
}
__getattr__ = lazy_exports(__name__, _NAMES)
__all__ = sorted(_NAMES)
