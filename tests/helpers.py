"""Helpers shared by the test tiers (importable, unlike conftest files)."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


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
