"""Saved remote stores: ``<store>/remotes.json``, ``[{"name", "url", "key"}]``.

The file holds keys, so it is written like the server's key file: mode 0600, atomically
(``common.atomic_write_json``), every read-modify-write under a lock across processes. Keys are
never printed: ``list_remotes`` gives them back for callers that send them, ``describe`` hides them.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..common import atomic_write_json, file_lock
from ..errors import WorkbenchError

# ``Store`` in annotations is ``workbench.store.store.Store``, named, not imported: this module
# sits below it (the store class calls it), and annotations are never evaluated here.

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def remotes_path(store: Store) -> Path:
    return store.home / "remotes.json"


def list_remotes(store: Store) -> list[dict]:
    """The saved remotes (with their keys), in the order they were added."""
    path = remotes_path(store)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as err:
        raise WorkbenchError(f"{path} cannot be read ({type(err).__name__}); delete it and add the remotes "
                             "again with `workbench store remotes add NAME URL --key KEY`.") from None
    if not isinstance(data, list):
        raise WorkbenchError(f"{path} is not a list of remotes; delete it and add them again.")
    return [r for r in data if isinstance(r, dict) and {"name", "url"} <= r.keys()]


def add_remote(store: Store, name: str, url: str, key: str | None) -> dict:
    """Save (or replace) remote ``name``. Returns it."""
    from .remote import StoreClient

    if not NAME_RE.match(name or ""):
        raise WorkbenchError(f"Remote name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-'.")
    url = StoreClient(url).url  # validates and normalises
    remote = {"name": name, "url": url, "key": key or ""}
    with file_lock(store.home / ".remotes.lock"):
        remotes = [r for r in list_remotes(store) if r["name"] != name] + [remote]
        atomic_write_json(remotes_path(store), remotes, mode=0o600)
    return remote


def remove_remote(store: Store, name: str) -> bool:
    with file_lock(store.home / ".remotes.lock"):
        remotes = list_remotes(store)
        kept = [r for r in remotes if r["name"] != name]
        if len(kept) == len(remotes):
            return False
        atomic_write_json(remotes_path(store), kept, mode=0o600)
    return True


def resolve(store: Store, where: str) -> tuple[str, str | None]:
    """(url, saved key or None) for a remote's name or a URL."""
    for r in list_remotes(store):
        if r["name"] == where:
            return r["url"], r.get("key") or None
    return where, key_for(store, where)


def key_for(store: Store, url: str) -> str | None:
    """The key saved for ``url``, if any."""
    url = url.strip().rstrip("/")
    for r in list_remotes(store):
        if r["url"] == url and r.get("key"):
            return r["key"]
    return None


def describe(remote: dict) -> str:
    key = remote.get("key") or ""
    return f"{remote['name']}  {remote['url']}  " + (f"key {key[:7]}..." if key else "no key")
