"""Apps in the store: list, read, save, duplicate, remove; built-ins copied in at first use.

Layout: ``<store>/apps/<id>/`` holds ``app.toml``, ``knowledge/<name>``, ``index.sqlite`` and
``manifest.json`` (``{"id", "kind": "app", "installed_at", "files", "origin"?}``; ``files`` lists
the card and the knowledge files with size and sha256). The index is built here from the
knowledge and is not in ``files``: it never travels, and is rebuilt when missing or stale. Every write goes through the store's one install
primitive (``workbench.store.install.installing``: a lock per app, a staging folder, the manifest
last, one rename), so an app appears whole or not at all, and two saves of one app queue on the
lock (pass ``expected_digest`` to refuse a save over an edit made since the form was opened).

Built-in apps ship in the package (``workbench/apps/builtin/<id>/``, the repo's ``apps/``); one
is copied into the store the first time it is used (``ensure_installed``). An app's id may not be
a model's id: the server lists both under one name space.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import CardError, WorkbenchError
from ..store.entries import entry_digest
from ..store.install import installing, publish
from ..store.sources import sha256_file
from .card import AppCard, check_app_id, read_app_card
from .index import build_index
from .knowledge import KnowledgeError, Passage, knowledge_text, split_passages

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
CARD = "app.toml"
INDEX = "index.sqlite"
KNOWLEDGE = "knowledge"


class UnknownAppError(WorkbenchError, KeyError):
    def __str__(self) -> str:
        return self.args[0] if self.args else ""


def builtin_apps_dir() -> Path:
    """The shipped apps: inside the installed package (a wheel), else the checkout's ``apps/``."""
    packaged = Path(__file__).resolve().parent / "builtin"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "apps"


def builtin_ids() -> list[str]:
    root = builtin_apps_dir()
    return sorted(p.name for p in root.iterdir() if (p / CARD).is_file()) if root.is_dir() else []


def apps_dir(store) -> Path:
    return store.home / "apps"


def app_dir(store, app_id: str) -> Path:
    return apps_dir(store) / check_app_id(app_id)


def flat_name(path: str | Path) -> str:
    """A knowledge file's name inside ``knowledge/``: its base name, unsafe characters as ``_``."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(path).name)[-100:].lstrip("._-")  # cut, then strip
    return name or "file.txt"


@dataclass(frozen=True)
class AppEntry:
    """A row of the app listing. ``installed``: in the store (a built-in may not be copied in
    yet); ``base_installed``: its base model is ready; ``problem``: what to do when it is not."""

    card: AppCard
    builtin: bool
    installed: bool
    base_installed: bool
    path: Path | None
    problem: str = ""

    def to_json(self) -> dict:
        c = self.card
        return {"id": c.id, "name": c.name, "description": c.description, "base_model": c.base_model,
                "author": c.author, "license": c.license, "version": c.version, "starters": list(c.starters),
                "greeting": c.greeting, "knowledge": list(c.knowledge_names), "builtin": self.builtin,
                "installed": self.installed, "base_installed": self.base_installed,
                "path": str(self.path) if self.path else None, "problem": self.problem}


def base_problem(store, card: AppCard) -> str:
    """'' when the base model is installed, else what to do."""
    if store.catalog.resolve(card.base_model) is None:
        return (f"needs model {card.base_model}, which is not in this store: add it (`workbench store add`) "
                f"or change the app's base model (`workbench apps create {card.id} --model OTHER`).")
    if not store.is_installed(card.base_model):
        return f"needs model {card.base_model}: install it with `workbench store install {card.base_model}`."
    return ""


def _installed_card(store, app_id: str) -> AppCard | None:
    path = apps_dir(store) / app_id
    if not (path / MANIFEST).is_file():
        return None
    return read_app_card(path / CARD)


def list_apps(store, problems: list | None = None) -> list[AppEntry]:
    """Built-in apps and the store's, sorted by id. A malformed installed app is left out and
    ``(path, message)`` is appended to ``problems`` (and logged)."""
    store.catalog.refresh()
    builtins = set(builtin_ids())
    cards: dict[str, tuple[AppCard, bool, Path | None]] = {}
    root = apps_dir(store)
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if not (folder / MANIFEST).is_file():
            continue
        try:
            cards[folder.name] = (read_app_card(folder / CARD), True, folder)
        except CardError as err:
            log.warning("Skipped the app %s: %s", folder, err)
            if problems is not None:
                problems.append((folder, f"{err} Fix app.toml or remove the app (`workbench apps remove {folder.name}`)."))
    for app_id in builtins - set(cards):
        cards[app_id] = (read_app_card(builtin_apps_dir() / app_id / CARD), False, None)
    out = []
    for app_id in sorted(cards):
        card, installed, path = cards[app_id]
        problem = base_problem(store, card)
        out.append(AppEntry(card, app_id in builtins, installed, not problem, path, problem))
    return out


def get_card(store, app_id: str) -> AppCard:
    """The card of an installed or built-in app; ``UnknownAppError`` lists the ids."""
    check_app_id(app_id)
    card = _installed_card(store, app_id)
    if card is not None:
        return card
    if app_id in builtin_ids():
        return read_app_card(builtin_apps_dir() / app_id / CARD)
    known = ", ".join(e.card.id for e in list_apps(store)) or "none yet"
    raise UnknownAppError(f"Unknown app '{app_id}'. Apps: {known}. Make one with `workbench apps create ID --model BASE`.")


def read_manifest(store, app_id: str) -> dict:
    try:
        return json.loads((app_dir(store, app_id) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise UnknownAppError(f"App '{app_id}' is not installed in this store ({err}).") from err


def app_digest(store, app_id: str) -> str:
    return entry_digest(read_manifest(store, app_id)["files"])


def _shipped_digest(source: Path, card: AppCard) -> str:
    """What a built-in app ships as: its card and knowledge files as they are in the package."""
    return entry_digest(files_map_of(source, [CARD, *card.knowledge.files]))


def files_map_of(folder: Path, rels) -> dict:
    return {rel: {"size": (folder / rel).stat().st_size, "sha256": sha256_file(folder / rel)} for rel in rels}


def ensure_installed(store, app_id: str) -> Path:
    """The app's folder in the store. A built-in one is copied in first if it is not there, and
    copied again when the shipped version changed (a new workbench), unless it was edited here
    (an edit saves it without the ``builtin`` origin)."""
    path = app_dir(store, app_id)
    installed = (path / MANIFEST).is_file()
    if app_id not in builtin_ids():
        if not installed:
            get_card(store, app_id)  # raises UnknownAppError with the list
        return path
    source = builtin_apps_dir() / app_id
    card = read_app_card(source / CARD)
    shipped = _shipped_digest(source, card)
    if installed:
        origin = read_manifest(store, app_id).get("origin") or {}
        if not origin.get("builtin") or origin.get("shipped") == shipped:
            return path
    return save_app(store, card, [source / f for f in card.knowledge.files],
                    origin={"builtin": True, "shipped": shipped}, exist_ok=not installed, replace=installed)


def passages_of(folder: Path, card: AppCard) -> tuple[list[Passage], dict[str, str]]:
    """Every passage of the app's knowledge files in ``folder`` and ``{name: sha256}``."""
    passages, sources = [], {}
    for name in card.knowledge_names:
        path = folder / KNOWLEDGE / name
        passages += split_passages(name, knowledge_text(path), card.knowledge.max_passage_chars)
        sources[name] = sha256_file(path)
    return passages, sources


def files_map(folder: Path) -> dict:
    """Size and sha256 of the app's files: the card and the knowledge, not the manifest, and not
    the index, which is derived here from the knowledge (so an app that arrives from elsewhere
    never brings passages of its own to cite, and an app's digest is the same on every machine)."""
    files = {}
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in (MANIFEST, INDEX)
                    and not p.name.startswith(".")):
        files[f.relative_to(folder).as_posix()] = {"size": f.stat().st_size, "sha256": sha256_file(f)}
    return files


def make_manifest(folder: Path, app_id: str, origin: dict | None = None) -> dict:
    manifest = {"id": app_id, "kind": "app", "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "files": files_map(folder)}
    if origin:
        manifest["origin"] = origin
    return manifest


def save_app(store, card: AppCard, knowledge_paths=(), *, replace: bool = False, exist_ok: bool = False,
             origin: dict | None = None, expected_digest: str | None = None,
             require_base: bool = False) -> Path:
    """Install ``card`` with the files ``knowledge_paths`` (any paths; stored flattened as
    ``knowledge/<name>``, the card's ``knowledge.files`` set from them), index them, write the
    manifest last and put the entry in place with one rename. Refused: an id that is a model's,
    an existing app unless ``replace`` (``exist_ok`` returns the existing one), a save over an
    app whose digest is no longer ``expected_digest``, and (``require_base``) a base model this
    store does not know. Returns the entry's folder."""
    check_app_id(card.id)
    if store.catalog.resolve(card.id) is not None:
        raise CardError(f"'{card.id}' is already a model's id in this store; an app needs its own id (e.g. `{card.id}-app`).")
    if require_base and store.catalog.resolve(card.base_model) is None:
        raise CardError(f"The base model '{card.base_model}' is not in this store; pick one of `workbench store list`.")
    paths = [Path(p) for p in knowledge_paths]
    names = [flat_name(p) for p in paths]
    if len(set(names)) != len(names):
        raise KnowledgeError(f"Two knowledge files have the same name ({', '.join(names)}); rename one.")
    texts = [knowledge_text(p) for p in paths]  # every file checked before anything is written
    card = card.with_changes(knowledge={**card.to_json()["knowledge"], "files": [f"{KNOWLEDGE}/{n}" for n in names]})
    target = apps_dir(store) / card.id
    with installing(store, "app", card.id, target, what=f"saving app {card.id}", fix="save it again") as inst:
        if (target / MANIFEST).is_file():
            if exist_ok:
                return target
            if not replace:
                raise CardError(f"An app '{card.id}' is already in the store: pick another id, edit it, or "
                                f"remove it first (`workbench apps remove {card.id}`).")
            if expected_digest is not None and app_digest(store, card.id) != expected_digest:
                raise CardError(f"App '{card.id}' was changed by someone else since you opened it; reload it and "
                                "make your edit again (nothing was saved).")
        stage = inst.stage
        (stage / KNOWLEDGE).mkdir()
        for path, name, text in zip(paths, names, texts):
            shutil.copyfile(path, stage / KNOWLEDGE / name)
            if knowledge_text(stage / KNOWLEDGE / name) != text:
                raise KnowledgeError(f"{path} changed while it was being copied; save the app again.")
        (stage / CARD).write_text(card.to_toml(), encoding="utf-8")
        passages, sources = passages_of(stage, card)
        build_index(stage / INDEX, passages, sources)
        inst.commit(make_manifest(stage, card.id, origin), manifest_name=MANIFEST)
    return target


def reindex_if_changed(store, app_id: str, card: AppCard) -> list[str]:
    """Re-index an installed app whose knowledge files changed on disk since they were indexed;
    the manifest is rewritten with their new hashes. Returns the notes to show ('' list if none)."""
    from .index import indexed_sources

    folder = app_dir(store, app_id)
    current = {n: sha256_file(folder / KNOWLEDGE / n) for n in card.knowledge_names if (folder / KNOWLEDGE / n).is_file()}
    missing = [n for n in card.knowledge_names if n not in current]
    if missing:
        raise KnowledgeError(f"The knowledge file {missing[0]} of app '{app_id}' is gone from {folder / KNOWLEDGE}; "
                             "put it back, or edit the app and leave it out.")
    try:
        if indexed_sources(folder / INDEX) == current:
            return []
    except WorkbenchError:
        pass  # a missing or unreadable index is rebuilt
    with store.lock(f"app-{app_id}"), store.staging(f"app-index-{app_id}") as scratch:
        manifest = read_manifest(store, app_id)  # UnknownAppError if it was removed meanwhile
        changed = sorted(n for n in current if indexed_sources_safe(folder / INDEX).get(n) != current[n])
        passages, sources = passages_of(folder, card)
        publish(build_index(scratch / INDEX, passages, sources), folder / INDEX)  # one rename, as installs do
        manifest["files"] = files_map(folder)
        from ..common import atomic_write_json

        atomic_write_json(folder / MANIFEST, manifest)
    return [f"{n} changed since it was indexed; re-indexed it." for n in changed] or ["The index was rebuilt."]


def indexed_sources_safe(path: Path) -> dict:
    from .index import indexed_sources

    try:
        return indexed_sources(path)
    except WorkbenchError:
        return {}


def remove_app(store, app_id: str) -> bool:
    """Take an app out of the store (atomically: it vanishes in one rename). A built-in one is
    copied in again, as shipped, the next time it is used. True if something was removed."""
    path = app_dir(store, app_id)
    with store.lock(f"app-{app_id}"):
        return store.discard_path(path)


def duplicate_app(store, app_id: str, new_id: str, name: str | None = None) -> Path:
    """Copy an app (card, knowledge) under ``new_id``; the copy is the user's to edit."""
    source = ensure_installed(store, app_id)
    card = get_card(store, app_id)
    new = card.with_changes(id=check_app_id(new_id), name=name or f"{card.name} (copy)")
    return save_app(store, new, [source / f for f in card.knowledge.files])
