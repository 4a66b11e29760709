"""Store entries as they travel between machines: kinds, digests, the served index, and an
uploaded entry's install.

An **entry** is one installed folder with a ``manifest.json`` whose ``files`` map is
``{relative posix path: {"size": int, "sha256": hex, ...}}``:

    kind      folder             user card
    model     models/<id>/       cards/<id>.toml    (a built-in card ships with the workbench)
    dataset   data/<id>/         corpora/<id>.toml  (idem)
    app       apps/<id>/         app.toml inside the entry

A model's manifest may also name a ``gguf`` {"file", "size", "sha256"}: a file of the entry too,
transferred with the others (``transfer_files``). An entry's **digest** is ``entry_digest(files)``,
the same string as ``Store.fingerprint`` for models.

- ``list_entries(store)`` / ``read_entry(store, kind, id)``: the ENTRY dicts of the HTTP protocol
  (``{"kind", "id", "builtin", "card", "digest", "manifest", "size_bytes"}``). Only whole entries
  are listed: a readable manifest, every file present with its recorded size, a card (a folder
  whose card is gone is not an entry).
- ``StoreIndex(store)``: the same listing and a blob index sha256 -> (file, size) built from every
  manifest, both cached under a stat signature of the entry folders, manifests and card files,
  so a request re-stats but never re-reads an unchanged store.
- ``check_manifest(manifest, kind)``: the files an incoming manifest names, refused when a path
  could leave the entry (``..``, absolute, backslashes, empty parts) or a size or sha256 is
  malformed. ``check_disk`` refuses sizes that do not fit the disk, before any byte is accepted.
- ``receive_entry(...)``: installs an uploaded entry through ``store.install.installing`` (lock,
  staging, verify, manifest last, one rename): whole or not at all. Clashing ids raise
  ``EntryExistsError``; files neither uploaded nor held locally with the same sha256 raise
  ``MissingBlobsError``.

This module does not speak HTTP and never imports ``workbench.apps`` (the app layout is read from
its folder as the design contract describes it) or ``workbench.data``: dataset cards are read and
checked by ``dataset_cards``, which the data package builds on.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import tomllib

from ..common import atomic_write_text
from ..errors import DiskSpaceError, IntegrityError, InvalidInputError, WorkbenchError
from .catalog import ID_PATTERN
from .dataset_cards import CORPORA, dataset_catalog, read_dataset_card
from .install import installing
from .sources import sha256_file

MANIFEST = "manifest.json"
KINDS = ("model", "dataset", "app")
FOLDERS = {"model": "models", "dataset": "data", "app": "apps"}
CARD_DIRS = {"model": "cards", "dataset": CORPORA}
APP_CARD = "app.toml"
APP_INDEX = "index.sqlite"  # an app's passage index: built locally, never sent
SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")
DISK_RESERVE_BYTES = 64 * 2**20  # left free after a received entry
MAX_FILES = 100_000
CHUNK = 1 << 20


class UnknownEntryError(WorkbenchError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0] if self.args else ""


class EntryExistsError(WorkbenchError):
    """The id is taken in the receiving store."""


class BadManifestError(InvalidInputError):
    """An incoming manifest names a path outside its entry, or malformed sizes or hashes."""


class MissingBlobsError(WorkbenchError):
    """Files of an entry that are neither uploaded nor held locally; ``missing`` lists sha256s."""

    def __init__(self, message: str, missing: list[str]):
        super().__init__(message)
        self.missing = missing


def entry_digest(files: Mapping) -> str:
    """sha256 of ``json.dumps(files, sort_keys=True)``: what an entry holds, as one string."""
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise UnknownEntryError(f"Unknown entry kind {kind!r}: use one of {', '.join(KINDS)}.")
    return kind


def entry_dir(store, kind: str, entry_id: str) -> Path:
    return store.home / FOLDERS[check_kind(kind)] / entry_id


def card_path(store, kind: str, entry_id: str) -> Path:
    """Where the user's card of an entry lives (for apps, inside the entry)."""
    if check_kind(kind) == "app":
        return entry_dir(store, kind, entry_id) / APP_CARD
    return store.home / CARD_DIRS[kind] / f"{entry_id}.toml"


def lock_name(kind: str, entry_id: str) -> str:
    """The install lock the rest of the store uses for this entry (models: the id)."""
    return {"model": entry_id, "dataset": f"data-{entry_id}", "app": f"app-{entry_id}"}[check_kind(kind)]


def transfer_files(manifest: Mapping) -> dict[str, dict]:
    """Every file that travels with an entry: ``files`` plus a model's ``gguf``."""
    files = {rel: dict(meta) if isinstance(meta, Mapping) else meta
             for rel, meta in (manifest.get("files") or {}).items()}
    gguf = manifest.get("gguf")
    if isinstance(gguf, Mapping) and gguf.get("file"):
        files.setdefault(gguf["file"], {"size": gguf.get("size"), "sha256": gguf.get("sha256")})
    return files


# --- checking what comes in -------------------------------------------------------------------

def check_path(rel) -> str:
    """``rel`` if it is a plain relative posix path inside an entry; ``BadManifestError`` otherwise."""
    fix = "Send paths relative to the entry folder, with '/' between parts and no '..'."
    if not isinstance(rel, str) or not rel or len(rel) > 1024 or "\0" in rel:
        raise BadManifestError(f"The manifest names an empty or malformed path {rel!r}. {fix}")
    if "\\" in rel:
        raise BadManifestError(f"The manifest path {rel!r} has a backslash. {fix}")
    if rel.startswith("/") or re.match(r"^[A-Za-z]:", rel):
        raise BadManifestError(f"The manifest path {rel!r} is absolute. {fix}")
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise BadManifestError(f"The manifest path {rel!r} has an empty, '.' or '..' part. {fix}")
    if rel == MANIFEST:
        raise BadManifestError(f"The manifest lists {MANIFEST} itself: leave it out of 'files'.")
    return rel


def check_manifest(manifest, kind: str) -> dict[str, dict]:
    """The files (``transfer_files``) of an incoming manifest, each path and size and sha256
    checked; ``BadManifestError`` says what is wrong."""
    check_kind(kind)
    if not isinstance(manifest, Mapping) or not isinstance(manifest.get("files"), Mapping):
        raise BadManifestError("The manifest has no 'files' table: send the entry's manifest.json as it is.")
    gguf = manifest.get("gguf")
    if gguf is not None and not (isinstance(gguf, Mapping) and isinstance(gguf.get("file"), str)):
        raise BadManifestError("The manifest's 'gguf' must be {\"file\", \"size\", \"sha256\"}.")
    files = transfer_files(manifest)
    if not files:
        raise BadManifestError("The manifest lists no files: an entry needs at least one.")
    if len(files) > MAX_FILES:
        raise BadManifestError(f"The manifest lists {len(files):,} files, over the limit of {MAX_FILES:,}.")
    for rel, meta in files.items():
        check_path(rel)
        size, sha = (meta.get("size"), meta.get("sha256")) if isinstance(meta, Mapping) else (None, None)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadManifestError(f"The manifest gives {rel!r} the size {size!r}: sizes are whole numbers of bytes.")
        if not isinstance(sha, str) or not SHA256_RE.match(sha):
            raise BadManifestError(f"The manifest gives {rel!r} the sha256 {sha!r}: use 64 lowercase hex digits.")
    folders = {str(p) for rel in files for p in PurePosixPath(rel).parents if str(p) != "."}
    clash = sorted(folders & set(files))
    if clash:
        raise BadManifestError(f"The manifest names {clash[0]!r} as a file and as a folder: fix the file list.")
    if kind == "app" and APP_CARD not in files:
        raise BadManifestError(f"An app entry must hold its card {APP_CARD}; it is not in the manifest.")
    if kind == "app" and APP_INDEX in files:  # its passages would be cited as they came, unchecked
        raise BadManifestError(f"An app entry travels without {APP_INDEX}: the index is built where the app "
                               "lands, from its knowledge files. Leave it out of the manifest.")
    if kind == "model" and "config.json" not in files:
        raise BadManifestError("A model entry must hold config.json (a Hugging Face folder); it is not in the manifest.")
    return files


def check_disk(store, need: int) -> None:
    """``DiskSpaceError`` unless ``need`` bytes (and a reserve) fit under the store root now."""
    free = shutil.disk_usage(store.home).free
    if need + DISK_RESERVE_BYTES > free:
        raise DiskSpaceError(
            f"The entry needs {need:,} bytes and {free:,} are free under {store.home} (keeping "
            f"{DISK_RESERVE_BYTES:,} spare); nothing was accepted. Free space on that machine "
            "(`workbench store remove ID`) and send it again."
        )


def _valid_id(entry_id) -> str:
    if not isinstance(entry_id, str) or not ID_PATTERN.match(entry_id):
        raise BadManifestError(
            f"{entry_id!r} is not a valid id: use 1-64 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return entry_id


# --- what a store holds -----------------------------------------------------------------------

def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _whole(folder: Path, files: dict) -> bool:
    """Every file present with its recorded size (no hashing)."""
    for rel, meta in files.items():
        try:
            if (folder / rel).stat().st_size != meta.get("size"):
                return False
        except (OSError, AttributeError):
            return False
    return True


def _model_card(store, name: str):
    """The model card ``name`` (an id or alias) resolves to in ``store``, or None."""
    model_id = store.catalog.resolve(name)
    return store.catalog.get(model_id) if model_id is not None else None


def _builtin_app(entry_id: str) -> bool:
    """Whether ``entry_id`` is one of the apps shipped with the workbench (read from the folders
    the contract names, without importing ``workbench.apps``)."""
    package = Path(__file__).resolve().parents[1]
    return any((d / entry_id / APP_CARD).is_file() for d in (package / "apps" / "builtin", package.parent / "apps"))


def _entry_card(store, kind: str, entry_id: str, folder: Path, catalogs: dict) -> tuple[bool, str | None] | None:
    """(builtin, card text or None) of an entry, or None when it has no card (not an entry)."""
    if kind == "app":
        builtin = _builtin_app(entry_id)
        try:
            return builtin, None if builtin else (folder / APP_CARD).read_text(encoding="utf-8")
        except OSError:
            return None
    path = card_path(store, kind, entry_id)
    if path.is_file():
        try:
            return False, path.read_text(encoding="utf-8")
        except OSError:
            return None
    if kind == "model":
        card = _model_card(store, entry_id)
        known = card is not None and card.id == entry_id and not card.custom
    else:
        if "dataset" not in catalogs:
            catalogs["dataset"] = dataset_catalog(store)
        try:
            card = catalogs["dataset"].get(entry_id)
            known = card.id == entry_id and not card.custom
        except WorkbenchError:
            known = False
    return (True, None) if known else None


def travelling(kind: str, manifest: dict) -> dict:
    """The manifest an entry travels with: an app's without its locally built index (apps saved
    before the index left their manifests still list it)."""
    if kind != "app" or APP_INDEX not in manifest.get("files", {}):
        return manifest
    return {**manifest, "files": {rel: m for rel, m in manifest["files"].items() if rel != APP_INDEX}}


def _entry(store, kind: str, entry_id: str, catalogs: dict) -> dict | None:
    folder = entry_dir(store, kind, entry_id)
    manifest = _read_json(folder / MANIFEST)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return None
    manifest = travelling(kind, manifest)
    files = transfer_files(manifest)
    if not _whole(folder, files):
        return None
    card = _entry_card(store, kind, entry_id, folder, catalogs)
    if card is None:
        return None
    return {"kind": kind, "id": entry_id, "builtin": card[0], "card": card[1],
            "digest": entry_digest(manifest["files"]), "manifest": manifest,
            "size_bytes": sum(int(m.get("size") or 0) for m in files.values())}


def list_entries(store) -> list[dict]:
    """ENTRY dicts of every whole model, dataset and app entry, by kind then id."""
    store.catalog.refresh()
    out, catalogs = [], {}
    for kind in KINDS:
        root = store.home / FOLDERS[kind]
        names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        for name in names:
            if ID_PATTERN.match(name):
                entry = _entry(store, kind, name, catalogs)
                if entry is not None:
                    out.append(entry)
    return out


def read_entry(store, kind: str, entry_id: str) -> dict:
    """One ENTRY; ``UnknownEntryError`` (with the fix) when the store has no whole entry so named."""
    check_kind(kind)
    if isinstance(entry_id, str) and ID_PATTERN.match(entry_id):
        store.catalog.refresh()
        entry = _entry(store, kind, entry_id, {})
        if entry is not None:
            return entry
    raise UnknownEntryError(
        f"This store has no {kind} '{entry_id}'. List what it holds with GET /v1/store/index "
        "(`workbench store list` on that machine)."
    )


def _stat_key(path: Path) -> tuple:
    try:
        st = os.stat(path)
    except OSError:
        return (str(path), None)
    return (str(path), st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


def store_signature(store) -> tuple:
    """What identifies the entries of ``store`` now: the stat of every entry folder's parent,
    every manifest and every card file (an install, a removal or a card change alters it)."""
    keys = []
    for kind in KINDS:
        root = store.home / FOLDERS[kind]
        keys.append(_stat_key(root))
        if root.is_dir():
            for child in sorted(root.iterdir()):
                keys.append(_stat_key(child / MANIFEST))
                if kind == "app":
                    keys.append(_stat_key(child / APP_CARD))
    for folder in CARD_DIRS.values():
        root = store.home / folder
        keys.append(_stat_key(root))
        if root.is_dir():
            keys += [_stat_key(p) for p in sorted(root.glob("*.toml"))]
    return tuple(keys)


class StoreIndex:
    """The served listing and blob index of one store, rebuilt only when ``store_signature``
    changes. Safe across threads."""

    def __init__(self, store):
        self.store = store
        self._lock = threading.Lock()
        self._cached: tuple[tuple, list[dict], dict[str, tuple[Path, int]]] | None = None

    def _current(self) -> tuple[list[dict], dict[str, tuple[Path, int]]]:
        signature = store_signature(self.store)
        with self._lock:
            if self._cached is None or self._cached[0] != signature:
                entries = list_entries(self.store)
                blobs = {}
                for e in entries:
                    folder = entry_dir(self.store, e["kind"], e["id"])
                    for rel, meta in transfer_files(e["manifest"]).items():
                        blobs.setdefault(meta["sha256"], (folder / rel, int(meta["size"])))
                self._cached = (signature, entries, blobs)
            return self._cached[1], self._cached[2]

    def entries(self) -> list[dict]:
        return self._current()[0]

    def blob(self, sha256: str) -> tuple[Path, int] | None:
        """(a file of some entry with this sha256, its size), or None."""
        return self._current()[1].get(sha256)


# --- receiving an entry -----------------------------------------------------------------------

def _copy_checked(src: Path, dst: Path, sha256: str, size: int) -> bool:
    """Copy ``src`` to ``dst`` hashing on the way; False (and ``dst`` removed) on a mismatch."""
    digest, done = hashlib.sha256(), 0
    try:
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            while block := fin.read(CHUNK):
                digest.update(block)
                fout.write(block)
                done += len(block)
    except FileNotFoundError:
        dst.unlink(missing_ok=True)
        return False
    if done != size or digest.hexdigest() != sha256:
        dst.unlink(missing_ok=True)
        return False
    return True


def _place(src: Path, dst: Path) -> None:
    """Hard-link ``src`` (an already checked upload) at ``dst``, or copy it where links fail."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def renamed_card(text: str, entry_id: str) -> str:
    """``text`` (a TOML card) with its top-level ``id`` set to ``entry_id``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise BadManifestError(f"The card is not valid TOML ({err}); fix it on the sending side.") from err
    if data.get("id") == entry_id:
        return text
    new, count = re.subn(r"(?m)^id\s*=.*$", f"id = {json.dumps(entry_id)}", text, count=1)
    if not count:
        raise BadManifestError("The card has no top-level `id = ...` line; fix it on the sending side.")
    return new


def id_taken(store, kind: str, entry_id: str) -> str:
    """Why ``entry_id`` cannot be received as a ``kind`` here ('' when it is free). A built-in
    card that is not installed is free for its own entry (``card`` None)."""
    if (entry_dir(store, kind, entry_id) / MANIFEST).is_file():
        return f"this store already holds the {kind} '{entry_id}'"
    if card_path(store, kind, entry_id).is_file() and kind != "app":
        return f"this store already has a card for the {kind} '{entry_id}'"
    if kind in ("model", "app"):
        store.catalog.refresh()
        card = _model_card(store, entry_id)
        if kind == "app" and card is not None:
            return f"'{entry_id}' is a model id here (apps and models share ids)"
        if kind == "model" and card is not None and card.id != entry_id:
            return f"'{entry_id}' is an alias of the model '{card.id}' here"
        other = "app" if kind == "model" else "model"
        if (entry_dir(store, other, entry_id) / MANIFEST).is_file():
            return f"'{entry_id}' is an {other} here (apps and models share ids)"
    return ""


def _check_card(store, kind: str, entry_id: str, card: str | None, scratch: Path) -> str | None:
    """The card text to write (id set to ``entry_id``), checked by the store's own parser; None
    for an entry of a built-in card, which must be known here."""
    if kind == "app":
        return None
    if card is None:
        if kind == "model":
            known = _model_card(store, entry_id)
            ok = known is not None and known.id == entry_id and not known.custom
        else:
            ok = entry_id in dataset_catalog(store)
        if not ok:
            raise BadManifestError(
                f"The {kind} '{entry_id}' was sent without a card, as a built-in one, but this workbench "
                f"has no built-in {kind} so named. Update the workbench here, or send its card."
            )
        return None
    if not isinstance(card, str):
        raise BadManifestError("The card must be the TOML text of the entry's card, or null for a built-in one.")
    text = renamed_card(card, entry_id)
    path = scratch / f"{entry_id}.toml"
    scratch.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    if kind == "model":
        from .catalog import read_card

        read_card(path, custom=True)
    else:
        read_dataset_card(path, custom=True)
    return text


def check_card(store, kind: str, entry_id: str, card: str | None) -> None:
    """Refuse (``BadManifestError`` / ``CardError``) a card that could not be installed, before
    any file is accepted."""
    with store.staging(f"card-{kind}") as scratch:
        _check_card(store, kind, entry_id, card, scratch)


def receive_entry(store, kind: str, entry_id: str, card: str | None, manifest: Mapping,
                  uploaded: Mapping[str, Path], local: StoreIndex | None = None) -> dict:
    """Install an entry sent from another store and return its ENTRY.

    ``uploaded`` maps sha256 -> a file already checked against it (hard-linked into the entry,
    so a refused commit leaves the uploads in place); every other file is copied from the file
    of the same sha256 in ``local`` (this store's blob index), hashed on the way. The manifest is
    written as sent (``id`` set to ``entry_id``, ``installed_at`` now; an app's ``app.toml`` gets
    its ``id`` rewritten when the entry is received under another id), the card (models,
    datasets) is written after the entry's one rename, under the same lock. Raises
    ``EntryExistsError`` for a taken id, ``MissingBlobsError`` listing what is neither uploaded
    nor here, ``BadManifestError`` / ``CardError`` for a bad manifest or card, and
    ``DiskSpaceError`` when it does not fit."""
    check_kind(kind)
    _valid_id(entry_id)
    files = check_manifest(manifest, kind)
    local = local or StoreIndex(store)
    target = entry_dir(store, kind, entry_id)
    with installing(store, kind, entry_id, target, lock=lock_name(kind, entry_id),
                    what=f"receiving {kind} {entry_id}", fix="send it again") as inst:
        taken = id_taken(store, kind, entry_id)
        if taken:
            raise EntryExistsError(f"Cannot receive '{entry_id}': {taken}. Send it under another id "
                                   f"(`workbench store push {entry_id} --as NEW_ID`).")
        card_text = _check_card(store, kind, entry_id, card, inst.staging / "card")
        check_disk(store, sum(m["size"] for m in files.values()))
        missing, placed = [], {}
        for rel, meta in files.items():
            sha, dst = meta["sha256"], inst.stage / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if sha in placed:
                shutil.copyfile(placed[sha], dst)
            elif sha in uploaded:
                _place(Path(uploaded[sha]), dst)
            else:
                held = local.blob(sha)
                if held is None or not _copy_checked(held[0], dst, sha, meta["size"]):
                    missing.append(sha)
                    continue
            placed[sha] = dst
        if missing:
            missing = sorted(set(missing))
            raise MissingBlobsError(
                f"{len(missing)} file(s) of '{entry_id}' were neither uploaded nor found here: upload them "
                "(PUT /v1/store/uploads/TOKEN/blobs/SHA256), then commit again.", missing)
        out = json.loads(json.dumps(dict(manifest)))
        out["id"] = entry_id
        out["installed_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if kind == "app":
            out["kind"] = "app"
            app_card = inst.stage / APP_CARD
            text = app_card.read_text(encoding="utf-8")
            new = renamed_card(text, entry_id)
            if new != text:
                app_card.unlink()  # a hard link to an upload: write a new file, not through it
                app_card.write_text(new, encoding="utf-8")
                out["files"][APP_CARD] = {**out["files"][APP_CARD], "size": app_card.stat().st_size,
                                          "sha256": hashlib.sha256(new.encode("utf-8")).hexdigest()}

        def verify(stage: Path) -> None:
            if kind == "model":
                from .convert import check_hf_dir

                check_hf_dir(stage)
            for rel, meta in transfer_files(out).items():
                if (stage / rel).stat().st_size != meta["size"]:
                    raise IntegrityError(f"{rel} has the wrong size after receiving it; send the entry again.")

        inst.commit(out, manifest_name=MANIFEST, verify=verify)
        if card_text is not None:
            atomic_write_text(card_path(store, kind, entry_id), card_text)
            if kind == "model":
                store.catalog.reload()
    return read_entry(store, kind, entry_id)


def verify_entry(store, kind: str, entry_id: str) -> list[str]:
    """Re-hash an installed entry of any kind against its manifest: the problems found (empty:
    every file matches). ``UnknownEntryError`` when there is no such entry here."""
    folder = entry_dir(store, check_kind(kind), entry_id)
    manifest = _read_json(folder / MANIFEST)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise UnknownEntryError(f"This store has no installed {kind} '{entry_id}' (`workbench store list`).")
    problems = []
    for rel, meta in sorted(travelling(kind, manifest)["files"].items()):
        f = folder / rel
        if not f.is_file():
            problems.append(f"{rel}: missing")
        elif f.stat().st_size != meta.get("size"):
            problems.append(f"{rel}: size {f.stat().st_size}, expected {meta.get('size')}")
        elif sha256_file(f) != meta.get("sha256"):
            problems.append(f"{rel}: sha256 differs from the manifest")
    return problems
