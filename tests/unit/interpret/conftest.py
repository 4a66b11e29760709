"""Fixtures of the interpret tests: tiny models loaded eager from the tiny store, and a "tuned"
copy of the tiny Llama (weights perturbed in the test, added through the store's custom path)."""
from __future__ import annotations

import pytest
from interpret_helpers import save_variant


@pytest.fixture
def load(tiny_store):
    from workbench.runtime.loading import load_model

    def _load(name: str):
        return load_model(name if name.startswith("tiny") or "-" in name else f"tiny-{name}",
                          store=tiny_store, device="cpu", attn_implementation="eager")

    return _load


@pytest.fixture
def tuned_store(tiny_store, tiny_model_dirs, tmp_path):
    """``tiny-llama-tuned``: tiny Llama with its weights perturbed by 5 % noise;
    ``tiny-llama-copy``: an exact copy; ``tiny-llama-othertok``: one extra token in its tokenizer."""
    src = tiny_model_dirs["llama"]
    tiny_store.add("tiny-llama-tuned", local_dir=save_variant(src, tmp_path / "tuned", scale=0.05))
    tiny_store.add("tiny-llama-copy", local_dir=save_variant(src, tmp_path / "copy"))
    tiny_store.add("tiny-llama-othertok", local_dir=save_variant(src, tmp_path / "other", extra_token="<zzz>"))
    return tiny_store
