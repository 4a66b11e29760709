"""Apps: assistants built on store models, with knowledge that is cited.

- ``card``: ``AppCard`` (``app.toml``) parsed, validated and written.
- ``knowledge``: knowledge files read and checked; passages with character spans and headings.
- ``index``: the SQLite FTS5 passage index (BM25), built when an app is saved.
- ``prompt``: one turn assembled within the base model's context; ``Citation``, ``Prepared``.
- ``app``: ``App`` (``Store().app(ID)``): ``chat``, ``stream``, ``prepare``; ``AppAnswer``.
- ``catalog``: apps in the store: list, save (the store's install primitive), duplicate, remove.
- ``share``: ``.gptapp`` export/import (checked before anything is installed), Ollama Modelfile.
- ``evaluation``: an app's own ``[[tests]]`` run greedy and recorded; fresh / stale / none.

Names are importable from the package; submodules load on first use (no torch until a model runs).
"""
from __future__ import annotations

from ..common import lazy_exports

_NAMES = {
    **dict.fromkeys(("AppCard", "AppTest", "Example", "GenerationSettings", "KnowledgeSettings", "parse_app_card",
                     "parse_app_toml", "read_app_card"), ".card"),
    **dict.fromkeys(("Passage", "KnowledgeError", "knowledge_text", "split_passages"), ".knowledge"),
    **dict.fromkeys(("Citation", "Prepared"), ".prompt"),
    **dict.fromkeys(("App", "AppAnswer", "AppStream", "open_app"), ".app"),
    **dict.fromkeys(("AppEntry", "UnknownAppError", "app_dir", "builtin_ids", "duplicate_app", "get_card",
                     "list_apps", "remove_app", "save_app"), ".catalog"),
    **dict.fromkeys(("export_app", "import_app"), ".share"),
    **dict.fromkeys(("run_tests", "test_status"), ".evaluation"),
}
__getattr__ = lazy_exports(__name__, _NAMES)
__all__ = sorted(_NAMES)
