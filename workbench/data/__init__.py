"""Text datasets in the store (named ``data``, never ``datasets``: that would shadow the Hugging
Face library wherever the repository root is on ``sys.path``).

- ``cards``: dataset cards (TOML in ``corpora/``, shipped in the wheel) as frozen dataclasses;
  defined in ``workbench.store.dataset_cards`` (the store checks the cards of the entries it
  receives), re-exported here.
- ``formats``: a user's file (plain text, JSONL ``text``, Alpaca, chat ``messages``) into
  documents; the held-out split; rendering chat with the model's template.
- ``install``: list, install (staging, sha256, atomic rename), verify, remove, add a file.
- ``loading``: ``load_dataset(store, id_or_path)`` -> ``Dataset`` (documents by split).

No torch, no tokenization.
"""
from ..common import lazy_exports

_NAMES = {
    **dict.fromkeys(("DatasetCard", "DatasetCatalog"), ".cards"),
    **dict.fromkeys(("FORMATS", "read_documents", "hold_out", "render"), ".formats"),
    **dict.fromkeys(("list_datasets", "install_dataset", "verify_dataset", "remove_dataset", "add_dataset",
                     "catalog"), ".install"),
    **dict.fromkeys(("Dataset", "load_dataset"), ".loading"),
}
__getattr__ = lazy_exports(__name__, _NAMES)
__all__ = sorted(_NAMES)
