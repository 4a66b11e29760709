"""A tiny Llama and its GGUF twin, for the q4 variants' tests: the GGUF holds the model's matrices
in several real block types (written by gguf-py's own quantizers), and the Hugging Face folder
holds exactly their de-quantized weights, as the store's GGUF installs do. The q/k rows are
permuted in the GGUF, as transformers' GGUF loader un-permutes Llama's, so matching must follow
rows, not names.

The GGUF carries only the tensors and a few architecture keys (no tokenizer), so a test installs
it with the store's GGUF converter swapped for ``hf_folder_converter``.
"""
from __future__ import annotations

import shutil
from pathlib import Path

# projection -> block type (every type gguf-py can write; K-quants are covered by block tests)
TYPES = {
    "embed_tokens": "Q8_0", "q_proj": "Q4_1", "k_proj": "Q5_0", "v_proj": "Q8_0", "o_proj": "Q4_0",
    "gate_proj": "Q4_1", "up_proj": "Q5_1", "down_proj": "Q4_1",
}


def _gguf_type(name: str) -> str | None:
    return next((t for key, t in TYPES.items() if f".{key}." in f".{name}"), None)


def build_gguf_twin(hf_dir: Path, gguf_path: Path, seed: int = 0) -> Path:
    """Quantize the 2-D weights of the tiny model in ``hf_dir`` into ``gguf_path`` and write
    their de-quantized values back into ``hf_dir`` (so the two hold the same weights)."""
    import json

    import gguf
    import numpy as np
    from safetensors.numpy import load_file, save_file

    weights = load_file(str(hf_dir / "model.safetensors"))
    config = json.loads((hf_dir / "config.json").read_text())
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(gguf_path), "llama")
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    for name in sorted(weights):
        w = weights[name].astype(np.float32)
        kind = _gguf_type(name)
        if kind is None or w.ndim != 2:
            writer.add_tensor(name, w)
            continue
        qtype = gguf.GGMLQuantizationType[kind]
        raw = gguf.quants.quantize(w, qtype)
        weights[name] = gguf.quants.dequantize(raw, qtype).reshape(w.shape).astype(np.float32)
        if "q_proj" in name or "k_proj" in name:  # rows in another order, as in real GGUFs
            raw = raw[rng.permutation(raw.shape[0])]
        writer.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    save_file(weights, str(hf_dir / "model.safetensors"), metadata={"format": "pt"})
    return gguf_path


def hf_folder_converter(hf_dir: Path):
    """A stand-in for ``workbench.store.convert.gguf_to_hf`` that copies ``hf_dir`` (the GGUF's
    twin) instead of asking transformers to read the tokenizer-less GGUF."""

    def convert(gguf_path: Path, out_dir: Path, progress=None) -> dict:
        from workbench.store.convert import check_hf_dir

        shutil.copytree(hf_dir, out_dir, dirs_exist_ok=True)
        return check_hf_dir(out_dir)

    return convert
