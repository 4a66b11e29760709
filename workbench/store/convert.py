"""Turn fetched weights into the store's one on-disk format: a Hugging Face folder with
``config.json``, tokenizer files and fp32 ``*.safetensors``.

GGUF files are de-quantized to fp32 by transformers' GGUF loader and saved as safetensors, so
later loads take about a second instead of half a minute. Nothing here downloads anything.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..common import Progress, quiet
from ..errors import UnsupportedModelError
from .sources import PICKLE_SUFFIXES


def supported_architectures() -> set[str]:
    """Causal-LM class names transformers can build without remote code."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())


def check_hf_dir(folder: Path) -> dict:
    """Refuse folders that need remote code, pickles or an unknown architecture; return config."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise UnsupportedModelError(f"{folder}/config.json is missing or not JSON ({err}).") from err
    if "auto_map" in config:
        raise UnsupportedModelError(
            f"{folder} needs custom code (`auto_map` in config.json). The workbench never runs "
            "`trust_remote_code`: pick a model whose architecture ships with transformers."
        )
    archs = config.get("architectures") or []
    known = supported_architectures()
    if not archs or not any(a in known for a in archs):
        raise UnsupportedModelError(
            f"Architecture {archs or '(none)'} is not a causal language model transformers "
            "knows. The workbench runs decoder-only text models (GPT-2, Llama, Gemma, Qwen, ...)."
        )
    pickles = [p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
    if pickles:
        raise UnsupportedModelError(f"Refusing pickle weight files {pickles}; use safetensors.")
    if not list(folder.glob("*.safetensors")):
        raise UnsupportedModelError(f"{folder} holds no *.safetensors weights.")
    return config


def gguf_to_hf(gguf_path: Path, out_dir: Path, progress: Progress = quiet) -> dict:
    """De-quantize ``gguf_path`` to fp32 and save model + tokenizer into ``out_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    progress(0.0, "reading the tokenizer from the GGUF file")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        progress(0.25, "de-quantizing the weights to fp32 (the longest step)")
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (ValueError, KeyError, OSError, RuntimeError) as err:
        raise UnsupportedModelError(
            f"transformers could not read {name}: {err}. The GGUF's architecture or quantization "
            "type may be one transformers cannot de-quantize; try a Q4_0/Q4_1/Q4_K/Q8_0/F16 file "
            "of a Llama, Gemma, Qwen or GPT-2 style model."
        ) from err
    progress(0.8, "saving fp32 safetensors")
    # A GGUF-loaded model carries its quantizer; the weights are already plain fp32 tensors,
    # so drop it to let save_pretrained write ordinary safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    progress(1.0, "converted")
    return check_hf_dir(out_dir)
