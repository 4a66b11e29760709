"""Attention of store models, as plain numpy arrays, split by concern:

- ``tokens``: tokens as a person reads them; ``structure``: where a model keeps its attention
  and its shape; ``budget``: the memory a run needs and what fits.
- ``maps``: one text's maps in one eager forward pass (``attention``); ``results``: what comes
  back (``AttentionResult``, ``GenerationAttention``); ``summaries``: mean over heads, rollout,
  head statistics, and the reductions that keep long maps drawable.
- ``recording``: attention while generating; ``ablation``: heads switched off and the next-token
  change; ``scores``: ``softmax(QKᵀ/√d_k)`` worked out for one head and query.

Nothing here draws (see ``workbench.views``). Names are importable from the package itself
(``from workbench.attention import attention``); each submodule is imported on first use, so the
torch-free parts (results, summaries, tokens) load without torch.
"""
from __future__ import annotations

from ..common import lazy_exports

_NAMES = {
    **dict.fromkeys(("VISIBLE", "display_tokens", "make_visible", "token_bytes"), ".tokens"),
    **dict.fromkeys(("FULL", "SLIDING", "Shape", "attention_modules", "check_eager", "decoder_stack", "model_shape"), ".structure"),
    **dict.fromkeys(("MEMORY_SHARE", "MemoryEstimate", "available_memory", "estimate_memory",
                     "layers_that_fit", "max_tokens_within"), ".budget"),
    **dict.fromkeys(("AttentionResult", "GenerationAttention", "Prediction", "save_npz"), ".results"),
    **dict.fromkeys(("attention", "capture", "check_length", "encode", "top_predictions"), ".maps"),
    **dict.fromkeys(("Edges", "HeadStats", "Reduced", "downsample", "head_stats", "mean_over_heads",
                     "position_labels", "rollout", "top_k_edges"), ".summaries"),
    **dict.fromkeys(("RecordingBackend", "generate_with_attention", "generation_attention"), ".recording"),
}
__getattr__ = lazy_exports(__name__, _NAMES)
__all__ = sorted(_NAMES)
