"""Where a transformers model keeps its attention, and what that attention looks like, read from
the config and the module tree (no forward pass, no torch import): the decoder layers' attention
modules, the ``Shape`` (layers, query and key/value heads, full or sliding layers) and the check
that a model was loaded with eager attention (the only kind that returns its weights)."""
from __future__ import annotations

from dataclasses import dataclass

from ..common import text_config
from ..errors import UnsupportedModelError

FULL, SLIDING = "full", "sliding"


def decoder_stack(module):
    """The decoder stack under a causal LM head (``LlamaModel``, ``Gemma3TextModel``,
    ``GPT2Model``; a multimodal model's ``language_model``)."""
    base = getattr(module, "model", None) or getattr(module, "transformer", None)
    if base is not None and hasattr(base, "language_model"):
        base = base.language_model
    if base is None:
        raise UnsupportedModelError(
            f"{type(module).__name__} has no decoder stack where the workbench looks (model or "
            "transformer): these views work for Llama, Gemma 3 and GPT-2 style models."
        )
    return base


def attention_modules(module) -> list:
    """The self-attention module of every decoder layer (Llama/Gemma ``self_attn``, GPT-2 ``attn``)."""
    base = decoder_stack(module)
    blocks = getattr(base, "layers", None)
    if blocks is None:
        blocks = getattr(base, "h", None)
    if blocks is None:
        raise UnsupportedModelError(
            f"{type(module).__name__} has no decoder layers where the workbench looks (model.layers "
            "or transformer.h): attention maps work for Llama, Gemma 3 and GPT-2 style models."
        )
    found = []
    for block in blocks:
        attn = getattr(block, "self_attn", None) or getattr(block, "attn", None)
        if attn is None:
            raise UnsupportedModelError(f"A layer of {type(module).__name__} has no self_attn/attn module.")
        found.append(attn)
    return found


@dataclass(frozen=True)
class Shape:
    """What the attention of a model looks like."""

    layers: int
    heads: int
    kv_heads: int
    layer_kinds: tuple[str, ...]
    sliding_window: int | None
    hidden_size: int
    vocab_size: int


def model_shape(model) -> Shape:
    cfg = text_config(model.config)
    layers = getattr(cfg, "num_hidden_layers", None) or cfg.n_layer
    heads = getattr(cfg, "num_attention_heads", None) or cfg.n_head
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    window = getattr(cfg, "sliding_window", None)
    types = list(getattr(cfg, "layer_types", None) or ["full_attention"] * layers)
    kinds = tuple(SLIDING if window and t == "sliding_attention" else FULL for t in types)
    hidden = getattr(cfg, "hidden_size", None) or cfg.n_embd
    return Shape(int(layers), int(heads), int(kv), kinds, int(window) if window and SLIDING in kinds else None,
                 int(hidden), int(cfg.vocab_size))


def check_eager(model) -> None:
    impl = getattr(model.config, "_attn_implementation", None) or getattr(model, "attn_implementation", None)
    if impl != "eager":
        raise UnsupportedModelError(
            f"{model.card.name} is loaded with attn_implementation='{impl}', which does not return "
            "attention weights. Load it with attn_implementation='eager' "
            "(load_model(..., attn_implementation='eager'))."
        )
