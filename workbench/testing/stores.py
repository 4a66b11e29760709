"""A store holding the tiny models, as the test tiers, benchmarks and scripts build it."""
from __future__ import annotations

from pathlib import Path


def make_tiny_store(home: Path, model_dirs: dict[str, Path], install: bool = True):
    """A store at ``home`` with the tiny models added as custom models ``tiny-gpt2``,
    ``tiny-llama`` (chat template, marked chat-capable) and ``tiny-gemma3``."""
    from workbench.store import Store

    store = Store(home)
    for kind, path in model_dirs.items():
        store.add(f"tiny-{kind}", local_dir=path, name=f"Tiny {kind}", install=install)
    card = store.cards_dir / "tiny-llama.toml"
    card.write_text(card.read_text().replace('capabilities = ["generate"', 'capabilities = ["chat", "generate"'))
    store.catalog.reload()
    return store
