"""A model's architecture read from its loaded config and weights (nothing written per model).

``architecture(model)`` walks ``module.named_parameters()`` (which lists a tied weight once, under
its first name) and sorts every tensor into a component: ``embedding``, ``layer N / attention``,
``layer N / mlp``, ``layer N / norms``, ``final norm`` and ``lm head``. A tied LM head owns no
tensor of its own: it is reported as tied to the embedding, so the counts add up to
``model.num_parameters()`` exactly.

Bytes are per variant: fp32 (and the ``fused`` ONNX variant) store 4 B per parameter; the ``int8``
ONNX variant stores MatMul weights (every 2-D projection, and the LM head, which the int8 export
unties into its own tensor) at 1 B per parameter and everything else (embedding table, norms,
biases) at 4 B. ``Architecture.exports`` holds the real file sizes of the variants exported in the
store, when there are any.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd

from ..common import text_config
from .parts import base_model, require, softcap

BYTES_PER_PARAM = {"fp32": 4.0, "fused": 4.0}  # int8 depends on the tensor, see ``int8_bytes``
_LAYER = re.compile(r"(?:^|\.)(?:layers|h)\.(\d+)\.")


@dataclass(frozen=True)
class Tensor:
    """One weight tensor. ``bytes_fp32`` = 4 × ``numel``; ``bytes_int8`` as the int8 export stores it."""

    name: str
    component: str  # "embedding", "layer 3 / attention", ...
    group: str  # "embedding", "attention", "mlp", "norms", "final norm", "lm head", "other"
    layer: int | None
    shape: tuple[int, ...]
    numel: int
    bytes_fp32: int
    bytes_int8: int


@dataclass
class Architecture:
    """The blocks of one model. ``tensors`` lists every parameter once (tied weights once)."""

    model: str
    kind: str  # the transformers class, e.g. LlamaForCausalLM
    layers: int
    hidden_size: int
    intermediate_size: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    context_length: int
    norm: str  # class name of the norm, e.g. LlamaRMSNorm / LayerNorm
    activation: str
    positions: str  # "rotary (theta …)" or "learned (n positions)"
    tied: bool  # the LM head shares the embedding's matrix
    logit_softcap: float | None
    layer_kinds: tuple[str, ...]
    tensors: list[Tensor]
    num_parameters: int  # model.num_parameters(), for the check
    exports: dict[str, int] = field(default_factory=dict)  # variant -> bytes on disk

    @property
    def counted(self) -> int:
        return sum(t.numel for t in self.tensors)

    def frame(self) -> pd.DataFrame:
        """One row per tensor: name, component, group, layer, shape, params, fp32 and int8 bytes."""
        return pd.DataFrame({
            "name": [t.name for t in self.tensors],
            "component": [t.component for t in self.tensors],
            "group": [t.group for t in self.tensors],
            "layer": [t.layer for t in self.tensors],
            "shape": [" × ".join(map(str, t.shape)) for t in self.tensors],
            "params": [t.numel for t in self.tensors],
            "bytes_fp32": [t.bytes_fp32 for t in self.tensors],
            "bytes_int8": [t.bytes_int8 for t in self.tensors],
        })

    def by_group(self) -> pd.DataFrame:
        """Parameters and bytes per group (embedding, attention, mlp, norms, final norm, lm head),
        summed over layers; ``share`` of all parameters."""
        df = self.frame().groupby("group", sort=False)[["params", "bytes_fp32", "bytes_int8"]].sum()
        df["share"] = df["params"] / max(self.counted, 1)
        return df.reset_index()

    def variant_bytes(self) -> dict[str, int]:
        """Bytes of the weights per variant: fp32 / fused by 4 B per parameter, int8 as
        ``int8_bytes`` counts (plus the untied LM head the int8 export adds when weights are tied)."""
        fp32 = sum(t.bytes_fp32 for t in self.tensors)
        int8 = sum(t.bytes_int8 for t in self.tensors)
        if self.tied:  # the int8 export folds the tied head into its own uint8 matrix
            int8 += self.vocab_size * self.hidden_size
        return {"fp32": fp32, "fused": fp32, "int8": int8}


def group_of(name: str, shape: tuple[int, ...]) -> tuple[str, int | None]:
    """(group, layer) of a parameter name, for Llama / Gemma 3 / GPT-2 naming."""
    m = _LAYER.search(name)
    if m:
        layer = int(m.group(1))
        rest = name[m.end():]
        if rest.startswith(("self_attn.", "attn.")):
            return "attention", layer
        if rest.startswith("mlp."):
            return "mlp", layer
        if "norm" in rest or rest.startswith(("ln_", "ln")):
            return "norms", layer
        return "other", layer
    if "lm_head" in name:
        return "lm head", None
    if any(k in name for k in ("embed", "wte", "wpe")):
        return "embedding", None
    if "norm" in name or "ln_f" in name:
        return "final norm", None
    return "other", None


def int8_bytes(group: str, shape: tuple[int, ...], numel: int) -> int:
    """Bytes the int8 export stores: 2-D projection weights (MatMul) at 1 B per parameter; the
    embedding table (a Gather), norms and biases stay fp32 at 4 B."""
    if len(shape) == 2 and group in ("attention", "mlp", "lm head"):
        return numel
    return 4 * numel


def _export_sizes(model) -> dict[str, int]:
    """Real sizes of the exports in the model's store (an empty dict when none, or no store)."""
    if model.store is None:
        return {}
    try:
        from ..onnx import VARIANTS, cached_export
    except ImportError:  # onnx tooling not installed
        return {}
    sizes = {}
    for variant in VARIANTS:
        found = cached_export(model.store, model.card.id, variant, verify=False)
        if found is not None:
            sizes[variant] = found.size_bytes
    return sizes


def architecture(model, with_exports: bool = True) -> Architecture:
    """Blocks, shapes and counts of a loaded model (``workbench.runtime.loading.Model``)."""
    require(model)
    module = model.module
    cfg = text_config(module.config)
    tensors = []
    for name, p in module.named_parameters():  # tied weights appear once
        shape = tuple(int(s) for s in p.shape)
        group, layer = group_of(name, shape)
        component = f"layer {layer} / {group}" if layer is not None else group
        n = int(p.numel())
        tensors.append(Tensor(name, component, group, layer, shape, n, 4 * n, int8_bytes(group, shape, n)))
    head = module.get_output_embeddings()
    embed = module.get_input_embeddings()
    tied = head is not None and head.weight is embed.weight
    layers = int(getattr(cfg, "num_hidden_layers", None) or cfg.n_layer)
    heads = int(getattr(cfg, "num_attention_heads", None) or cfg.n_head)
    hidden = int(getattr(cfg, "hidden_size", None) or cfg.n_embd)
    kv = int(getattr(cfg, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(cfg, "head_dim", None) or hidden // heads)
    inter = int(getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None) or 4 * hidden)
    base = base_model(module)
    norm = getattr(base, "norm", None) or getattr(base, "ln_f", None)
    if hasattr(base, "wpe"):
        positions = f"learned ({base.wpe.num_embeddings} positions)"
    else:
        theta = getattr(cfg, "rope_theta", None) or (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta")
        positions = f"rotary (theta {theta:g})" if theta else "rotary"
    types = list(getattr(cfg, "layer_types", None) or ["full_attention"] * layers)
    return Architecture(
        model=model.card.id, kind=type(module).__name__, layers=layers, hidden_size=hidden,
        intermediate_size=inter, heads=heads, kv_heads=kv, head_dim=head_dim,
        vocab_size=int(cfg.vocab_size), context_length=int(model.context_length),
        norm=type(norm).__name__ if norm is not None else "?",
        activation=str(getattr(cfg, "hidden_act", None) or getattr(cfg, "hidden_activation", None)
                       or getattr(cfg, "activation_function", "?")),
        positions=positions, tied=tied, logit_softcap=softcap(module),
        layer_kinds=tuple("sliding" if t == "sliding_attention" else "full" for t in types),
        tensors=tensors, num_parameters=int(module.num_parameters()),
        exports=_export_sizes(model) if with_exports else {},
    )
