"""Write model cards for models a user adds: a local HF folder, a local GGUF file, a hub id.

The card's numbers (layers, heads, context) are read from the model's own config so the store
shows real facts, never guesses. Only card text is produced here; ``Store.add`` writes and
installs it.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import InvalidInputError, SourceUnavailableError, UnsupportedModelError
from .catalog import ID_PATTERN


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def facts_from_config(config: dict) -> dict:
    text = config.get("text_config", config)
    layers = text.get("num_hidden_layers", text.get("n_layer", 0))
    heads = text.get("num_attention_heads", text.get("n_head", 0))
    return {
        "family": config.get("model_type", "unknown"),
        "architecture": (config.get("architectures") or ["unknown"])[0],
        "layers": int(layers),
        "heads": int(heads),
        "kv_heads": int(text.get("num_key_value_heads", heads) or heads),
        "context_length": int(text.get("max_position_embeddings", text.get("n_positions", 0)) or 0),
    }


def _count_safetensors_params(folder: Path) -> int:
    from safetensors import safe_open

    total = 0
    for f in folder.glob("*.safetensors"):
        with safe_open(str(f), framework="numpy") as st:
            for key in st.keys():
                shape = st.get_slice(key).get_shape()
                n = 1
                for d in shape:
                    n *= d
                total += n
    return total


def facts_from_gguf(path: Path) -> dict:
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except (ValueError, OSError) as err:
        raise UnsupportedModelError(f"{path} is not a readable GGUF file ({err}).") from err

    def field(key: str, default=0):
        f = reader.fields.get(key)
        if f is None:
            return default
        value = f.parts[f.data[0]]
        if f.types and f.types[0].name == "STRING":
            return bytes(value).decode("utf-8")
        return value[0].item() if hasattr(value[0], "item") else value[0]

    arch = field("general.architecture", "unknown")
    params = sum(int(t.n_elements) for t in reader.tensors)
    heads = int(field(f"{arch}.attention.head_count", 0))
    return {
        "family": arch,
        "architecture": arch,
        "layers": int(field(f"{arch}.block_count", 0)),
        "heads": heads,
        "kv_heads": int(field(f"{arch}.attention.head_count_kv", heads)),
        "context_length": int(field(f"{arch}.context_length", 0)),
        "parameters": params,
    }


def card_toml(
    model_id: str,
    *,
    local_dir=None,
    gguf=None,
    hub: str | None = None,
    revision: str = "main",
    name: str | None = None,
    description: str = "",
) -> str:
    if not ID_PATTERN.match(model_id or ""):
        raise InvalidInputError(
            f"'{model_id}' is not a valid id: use lowercase letters, digits, '.', '_' or '-'."
        )
    if sum(x is not None and x != "" for x in (local_dir, gguf, hub)) != 1:
        raise InvalidInputError("Give exactly one of: a local folder, a local GGUF file, a hub id.")
    tags = ["custom"]
    if local_dir:
        folder = Path(local_dir).expanduser().resolve()
        if not (folder / "config.json").is_file():
            raise SourceUnavailableError(f"{folder} has no config.json; pick a `save_pretrained` folder.")
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        facts = facts_from_config(config)
        facts["parameters"] = _count_safetensors_params(folder)
        source = f'kind = "local-dir"\npath = {_toml_str(str(folder))}\n'
    elif gguf:
        path = Path(gguf).expanduser().resolve()
        if not path.is_file():
            raise SourceUnavailableError(f"{path} does not exist; pick an existing .gguf file.")
        facts = facts_from_gguf(path)
        source = f'kind = "local-gguf"\npath = {_toml_str(str(path))}\n'
    else:
        from huggingface_hub import hf_hub_download

        from .sources import hub_reachable

        if not hub_reachable():
            raise SourceUnavailableError(
                f"Adding {hub} needs the Hugging Face hub, which this machine cannot reach. "
                "Download the model elsewhere and add the folder with --dir."
            )
        config = json.loads(Path(hf_hub_download(hub, "config.json", revision=revision)).read_text())
        facts = facts_from_config(config)
        facts["parameters"] = 0
        files = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
        source = (
            f'kind = "hub"\nrepo = {_toml_str(hub)}\nrevision = {_toml_str(revision)}\n\n'
            "[sources.files]\n" + "".join(f'{_toml_str(f)} = ""\n' for f in files)
        )
    caps = ["generate", "attention", "onnx"]
    return (
        f"id = {_toml_str(model_id)}\n"
        f"name = {_toml_str(name or model_id)}\n"
        f"family = {_toml_str(facts['family'])}\n"
        f"architecture = {_toml_str(facts['architecture'])}\n"
        f"parameters = {int(facts['parameters'])}\n"
        f"layers = {facts['layers']}\nheads = {facts['heads']}\nkv_heads = {facts['kv_heads']}\n"
        f"context_length = {facts['context_length']}\n"
        f'license = "unknown (added by the user)"\n'
        f"tags = {json.dumps(tags)}\ncapabilities = {json.dumps(caps)}\n"
        f"description = {_toml_str(description or 'A model added to the store by the user.')}\n\n"
        f"[[sources]]\n{source}"
    )
