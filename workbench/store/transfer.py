"""Moving store entries between workbenches: ``pull`` (remote -> local store) and ``push``
(local store -> remote), over a ``remote.StoreClient``.

Pull contract:

- The entry's manifest is checked before any byte is fetched: every path stays inside the entry
  (no ``..``, no absolute path, no backslash), sizes are whole numbers, hashes are sha256 hex,
  and the bytes to fetch fit the free disk (``DiskSpaceError`` otherwise).
- A file the local store already holds with the same sha256 (in any entry, checked by hashing it)
  is hard-linked (or copied) locally, never fetched.
- Fetched bytes go to ``<store>/.partial/<sha256>``; a pull that is killed or whose server goes
  away keeps them, and the next pull asks for the rest with HTTP Range. A file counts only once
  its sha256 matches; a mismatch deletes its bytes and refuses the pull (``IntegrityError``).
  Reading the socket, hashing and writing overlap (``HashingWriter``: worker threads, blocks in
  order, so the file is always a prefix of the blob); writeback to disk starts as the bytes land,
  and each file is fsynced once, by the install's commit.
- The entry is installed through ``install.installing`` (lock per id, so two pulls of one id run
  one after the other and the second finds it there; staging; manifest last; one rename): it
  appears at once or not at all. The manifest records ``origin`` (url, kind, id, digest,
  pulled_at). A user card (``cards/<id>.toml``, ``corpora/<id>.toml``) is written just before the
  entry and put back as it was if the install fails; an app's card is ``app.toml`` in the entry.
- An id the local store holds already is replaced only when it came from the same origin (an
  update) or ``force``; otherwise the pull is refused with the fix.

Push contract: only the files the remote says it lacks are sent; ``as_id`` renames the entry (its
card's and manifest's id; an app's ``app.toml`` is rewritten and sent as a new file); the remote
commits it whole or not at all, and refuses an id it holds (use ``as_id``).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import tomllib

from ..common import Progress, atomic_write_text, file_lock, human_bytes, quiet
from ..errors import DiskSpaceError, IntegrityError, UnknownModelError, WorkbenchError
from .blobwriter import HashingWriter
from .catalog import ID_PATTERN
from .entries import (
    APP_CARD,
    BadManifestError,
    check_card,
    entry_digest,
    lock_name,
    transfer_files,
    travelling,
)
from .entries import card_path as _card_path
from .entries import check_manifest as _check_files
from .entries import entry_dir as entry_root
from .install import installing
from .remote import KINDS, RemoteEntry, StoreClient, stream_file
from .sources import CHUNK, sha256_file

# ``Store`` in annotations is ``workbench.store.store.Store``, named, not imported: this module
# sits below it (the store class calls it), and annotations are never evaluated here.

MANIFEST = "manifest.json"


# --- where entries live ----------------------------------------------------------------------

def card_path(store: Store, kind: str, item_id: str) -> Path | None:
    """The user card of a model or dataset outside the entry; None for apps (``app.toml`` travels
    as a file of the entry)."""
    return None if kind == "app" else _card_path(store, kind, item_id)


def partial_dir(store: Store) -> Path:
    return store.home / ".partial"


def read_manifest(root: Path) -> dict | None:
    try:
        return json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# --- checks before any byte moves ------------------------------------------------------------

def check_manifest(entry: RemoteEntry, url: str) -> dict[str, dict]:
    """The files to fetch, once every path, size and hash is sane (``entries.check_manifest``,
    the same check the receiving server makes); ``IntegrityError`` otherwise."""
    try:
        if not isinstance(entry.id, str) or not ID_PATTERN.match(entry.id):
            raise BadManifestError(f"id {entry.id!r} is not a valid store id")
        return _check_files(entry.manifest, entry.kind)
    except WorkbenchError as err:
        raise IntegrityError(f"The store at {url} sent a manifest for {entry.kind} '{entry.id}' that is refused "
                             f"({err}); nothing was downloaded. Its entry may be damaged: run "
                             f"`workbench store verify {entry.id}` there.") from None


def local_blobs(store: Store) -> dict[str, Path]:
    """sha256 -> a file of an installed local entry that should hold those bytes (per its
    manifest; callers hash it before trusting it)."""
    found: dict[str, Path] = {}
    for base in (store.models_dir, store.home / "data", store.home / "apps"):
        if not base.is_dir():
            continue
        for root in base.iterdir():
            manifest = read_manifest(root)
            if not manifest:
                continue
            for rel, meta in transfer_files(manifest).items():
                if isinstance(meta, dict) and isinstance(meta.get("sha256"), str):
                    found.setdefault(meta["sha256"], root / rel)
    return found


def _place(src: Path, dest: Path) -> None:
    """``dest`` gets ``src``'s bytes: a hard link when possible, a copy otherwise."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise
        shutil.copyfile(src, dest)


# --- pull ------------------------------------------------------------------------------------

class _Meter:
    """Bytes done over bytes to do, reported as ``progress(fraction, message)``."""

    def __init__(self, total: int, progress: Progress, label: str):
        self.total, self.progress, self.label = max(total, 1), progress, label
        self.done = self._last = 0

    def add(self, n: int) -> None:
        self.done += n
        if self.done - self._last >= 4 * CHUNK or self.done >= self.total:
            self._last = self.done
            self.progress(min(0.95 * self.done / self.total, 0.95),
                          f"{self.label}: {human_bytes(self.done)} of {human_bytes(self.total)}")


def fetch_blob(store: Store, client: StoreClient, sha: str, size: int, rel: str, meter: _Meter,
               dest: Path | None = None) -> Path:
    """``<store>/.partial/<sha>`` holding exactly the blob's bytes, resumed from what it holds,
    and placed at ``dest`` (a link) while the blob's lock is held, so a concurrent pull that
    finishes and drops the partial file cannot pull it away from under this one. Serialized per
    blob across processes. ``IntegrityError`` (bytes dropped) on a mismatch.
    The bytes are hashed as they arrive (in a worker thread, while the next block is read); the
    file is not fsynced here: the install's commit fsyncs every file of the entry once, and a
    partial file damaged by a crash is caught by its sha256 and fetched again."""
    folder = partial_dir(store)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / sha
    with file_lock(folder / f".{sha}.lock"):
        have = path.stat().st_size if path.exists() else 0
        if have > size:
            path.unlink()
            have = 0
        digest = hashlib.sha256()
        if have:
            with open(path, "rb") as fh:
                while block := fh.read(CHUNK):
                    digest.update(block)
        meter.add(have)
        if have < size:
            out = HashingWriter(path, digest)
            try:
                if not client.download(sha, out, offset=have, on_bytes=lambda b: meter.add(len(b))):
                    out.restart()  # Range ignored: start over
                    meter.add(-have)
                    client.download(sha, out, 0, on_bytes=lambda b: meter.add(len(b)))
            finally:
                out.close()
            digest = out.digest
        got_size = path.stat().st_size
        if got_size < size:  # the server stopped short: keep the bytes, a later pull resumes
            raise client.gone(f"{got_size} of {size} bytes of {rel} arrived")
        if got_size != size or digest.hexdigest() != sha:
            path.unlink(missing_ok=True)
            raise IntegrityError(
                f"The bytes of {rel} from {client.url} do not match its sha256 (got {got_size} bytes, "
                f"sha256 {digest.hexdigest()[:16]}..., expected {size} bytes, {sha[:16]}...). They were "
                f"dropped and nothing was installed. Pull again; if it fails the same way, the origin's copy "
                f"is damaged: run `workbench store verify ID` there."
            )
        if dest is not None:
            _place(path, dest)
    return path


def _check_space(store: Store, need: int, entry: RemoteEntry) -> None:
    free = shutil.disk_usage(store.home).free
    if need * 1.05 + (16 << 20) > free:
        raise DiskSpaceError(
            f"Pulling {entry.kind} '{entry.id}' needs {human_bytes(need)} more under {store.home}, only "
            f"{human_bytes(free)} is free; nothing was downloaded. Free some space (`workbench store remove ID`) "
            "or point WORKBENCH_HOME at a bigger disk."
        )


def _claim(store: Store, entry: RemoteEntry, url: str, force: bool) -> None:
    """Refuse to replace a local entry or card that did not come from this origin (unless force)."""
    target = entry_root(store, entry.kind, entry.id)
    mine = read_manifest(target)
    card = card_path(store, entry.kind, entry.id)
    if entry.kind == "model" and entry.card is None and store.catalog.resolve(entry.id) is None:
        raise UnknownModelError(
            f"{url} holds '{entry.id}' with a card that ships with its workbench, and this workbench has no such "
            "card: update this workbench to the same version, then pull again."
        )
    if force:
        return
    origin = (mine or {}).get("origin") or {}
    same_origin = origin.get("url") == url and origin.get("id") == entry.id and origin.get("kind") == entry.kind
    if mine is not None and not same_origin:
        raise WorkbenchError(
            f"This store already holds {entry.kind} '{entry.id}', and not from {url}; nothing was pulled. Remove it "
            f"first (`workbench store remove {entry.id}`), or pull with --force to replace it."
        )
    if entry.kind == "model" and entry.card is not None and mine is None:
        known = store.catalog.resolve(entry.id)
        if known is not None and not (card and card.is_file()):
            raise WorkbenchError(
                f"'{entry.id}' is a model that ships with this workbench, and {url} holds a different model of that "
                f"id; nothing was pulled. Push it there under another id (`workbench store push {entry.id} --as NEW_ID`)."
            )
    if card is not None and entry.card is not None and card.is_file() and mine is None \
            and card.read_text(encoding="utf-8") != entry.card:
        raise WorkbenchError(
            f"This store has its own card for '{entry.id}' ({card}); nothing was pulled. Remove it first "
            f"(`workbench store remove {entry.id}`), or pull with --force to replace it."
        )


def pull(store: Store, client: StoreClient, entry: RemoteEntry, progress: Progress = quiet,
         force: bool = False) -> Path:
    """Install remote ``entry`` into ``store`` (see the module docstring). Returns its folder."""
    files = check_manifest(entry, client.url)
    digest = entry_digest(entry.files)
    if digest != entry.digest:
        raise IntegrityError(f"The store at {client.url} sent {entry.kind} '{entry.id}' with a digest that does not "
                             "match its file list; nothing was downloaded. Pull again, or update both workbenches.")
    target = entry_root(store, entry.kind, entry.id)
    what = f"pulling {entry.kind} {entry.id}"
    with installing(store, entry.kind, entry.id, target, lock=lock_name(entry.kind, entry.id),
                    what=what, fix="pull again (the bytes so far are dropped only if the disk is full)") as inst:
        mine = read_manifest(target)
        if mine is not None and entry_digest(travelling(entry.kind, mine).get("files", {})) == digest and not force:
            progress(1.0, f"{entry.id} is already here, the same as at {client.url}")  # whatever its origin
            return target
        _claim(store, entry, client.url, force)
        _check_incoming(store, entry, client.url)
        known = local_blobs(store)
        held: dict[str, Path] = {}
        for sha, meta in {m["sha256"]: m for m in files.values()}.items():
            src = known.get(sha)
            if src is not None and src.is_file() and src.stat().st_size == meta["size"] and sha256_file(src) == sha:
                held[sha] = src
        partials = partial_dir(store)
        to_fetch = {m["sha256"]: m["size"] for m in files.values() if m["sha256"] not in held}
        kept = sum(min((partials / s).stat().st_size, n) for s, n in to_fetch.items() if (partials / s).is_file())
        _check_space(store, sum(to_fetch.values()) - kept, entry)
        meter = _Meter(sum(to_fetch.values()), progress, f"pulling {entry.id}")
        progress(0.0, f"pulling {entry.id}: {len(to_fetch)} files to fetch, {len(held)} already here")
        fetched: dict[str, Path] = {}  # sha256 -> its first place in the stage
        for rel, meta in sorted(files.items()):
            sha, dest = meta["sha256"], inst.stage / rel
            if sha in held or sha in fetched:
                _place(held.get(sha) or fetched[sha], dest)
            else:  # placed under the blob's lock: another pull of it may drop the partial file after
                fetch_blob(store, client, sha, meta["size"], rel, meter, dest=dest)
                fetched[sha] = dest
        manifest = dict(entry.manifest)
        manifest.update(id=entry.id, kind=entry.kind, installed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        origin={"url": client.url, "kind": entry.kind, "id": entry.id, "digest": digest,
                                "pulled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        progress(0.96, "checking and placing the entry")
        card = card_path(store, entry.kind, entry.id)
        old_card = card.read_bytes() if card is not None and card.is_file() else None
        if card is not None and entry.card is not None:
            atomic_write_text(card, entry.card)
        try:
            inst.commit(manifest, verify=lambda stage: _verify_stage(stage, files, entry))
        except BaseException:
            if card is not None and entry.card is not None:
                if old_card is None:
                    card.unlink(missing_ok=True)
                else:
                    card.write_bytes(old_card)
            raise
        for sha in fetched:  # the entry holds them now
            with file_lock(partial_dir(store) / f".{sha}.lock"):
                (partial_dir(store) / sha).unlink(missing_ok=True)  # (its lock file stays: unlinking a
                # lock another process may be waiting on would let a third take a new one meanwhile)
        if entry.kind == "model":
            store.catalog.reload()
        progress(1.0, f"pulled {entry.kind} {entry.id} from {client.url}")
        return target


def _check_incoming(store: Store, entry: RemoteEntry, url: str) -> None:
    """Before any byte: the card parses here (the store's own parser) and the id is not the other
    kind's (apps and models share ids). ``BadManifestError`` / ``WorkbenchError`` with the fix."""
    check_card(store, entry.kind, entry.id, entry.card)
    store.catalog.refresh()
    clash = {"app": lambda: store.catalog.resolve(entry.id) is not None and "a model",
             "model": lambda: (entry_root(store, "app", entry.id) / MANIFEST).is_file() and "an app"}.get(entry.kind)
    other = clash() if clash else None
    if other:
        raise WorkbenchError(f"{url} holds the {entry.kind} '{entry.id}', but '{entry.id}' is {other} here (apps and "
                             "models share ids); nothing was pulled. Push it there under another id "
                             "(`workbench store push ID --as NEW_ID`), then pull that.")


def _verify_stage(stage: Path, files: dict[str, dict], entry: RemoteEntry) -> None:
    """Every file in place with its size (their bytes were hashed as they arrived), and an app's
    card naming the entry it came in."""
    for rel, meta in files.items():
        f = stage / rel
        if not f.is_file() or f.stat().st_size != meta["size"]:
            raise IntegrityError(f"{rel} did not land in the pulled entry whole; nothing was installed. Pull again.")
    if entry.kind == "app":
        try:
            card_id = tomllib.loads((stage / APP_CARD).read_text(encoding="utf-8")).get("id")
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
            raise BadManifestError(f"The app '{entry.id}' came with an unreadable {APP_CARD} ({err}); nothing was "
                                   "installed. Fix the app at its origin and pull again.") from err
        if card_id != entry.id:
            raise BadManifestError(f"The app '{entry.id}' came with a card for '{card_id}'; nothing was installed. "
                                   "Fix the app at its origin (`workbench apps show ID` there) and pull again.")


# --- push ------------------------------------------------------------------------------------

def local_entry(store: Store, item_id: str, kind: str | None = None) -> tuple[str, Path, dict, str | None]:
    """(kind, folder, manifest, card text or None for a built-in card) of an installed local entry."""
    kinds = [kind] if kind else list(KINDS)
    found = []
    for k in kinds:
        name = item_id
        if k == "model":
            resolved = store.catalog.resolve(item_id)
            name = resolved or item_id
        root = entry_root(store, k, name)
        manifest = read_manifest(root)
        if manifest is not None:
            found.append((k, root, manifest, name))
    if not found:
        raise UnknownModelError(f"This store has no installed {kind or 'model, dataset or app'} '{item_id}'. "
                                "See what it holds with `workbench store list`.")
    if len(found) > 1:
        raise WorkbenchError(f"This store holds several entries called '{item_id}' "
                             f"({', '.join(f[0] for f in found)}): say which with --kind.")
    k, root, manifest, name = found[0]
    manifest = travelling(k, manifest)
    card = card_path(store, k, name)
    if k == "app":
        text = (root / "app.toml").read_text(encoding="utf-8") if (root / "app.toml").is_file() else None
    else:
        text = card.read_text(encoding="utf-8") if card is not None and card.is_file() else None
    return k, root, manifest, text


def push(store: Store, client: StoreClient, item_id: str, kind: str | None = None, as_id: str | None = None,
         progress: Progress = quiet) -> RemoteEntry:
    """Send a local entry to the remote store (see the module docstring); the committed entry.
    Under ``as_id`` the receiving side sets the id in the card (an app's ``app.toml`` included)."""
    kind, root, manifest, card = local_entry(store, item_id, kind)
    new_id = as_id or root.name
    if not ID_PATTERN.match(new_id):
        raise WorkbenchError(f"{new_id!r} is not a valid store id: use lowercase letters, digits, '.', '_' or '-'.")
    if card is None and new_id != root.name and kind != "app":
        raise WorkbenchError(f"'{root.name}' ships with the workbench, so it cannot travel under another id; "
                             "push it without --as.")
    manifest = {k: v for k, v in manifest.items() if k != "origin"}
    manifest["id"] = new_id
    files = transfer_files(manifest)
    progress(0.0, f"asking {client.url} what it lacks")
    token, missing = client.start_upload(kind, new_id, None if kind == "app" else card, manifest)
    by_sha = {m["sha256"]: (rel, m["size"]) for rel, m in files.items()}
    unknown = [s for s in missing if s not in by_sha]
    if unknown:
        raise WorkbenchError(f"{client.url} asked for files that are not in '{item_id}' ({unknown[0][:12]}...); "
                             "update both workbenches to the same version.")
    meter = _Meter(sum(by_sha[s][1] for s in missing), progress, f"pushing {new_id}")
    for sha in missing:
        rel, size = by_sha[sha]
        path = root / rel
        if not path.is_file() or path.stat().st_size != size:
            raise IntegrityError(f"{path} is missing or has the wrong size, so '{item_id}' cannot be pushed; "
                                 f"check it with `workbench store verify {item_id}`.")
        client.upload_blob(token, sha, stream_file(path, meter.add), size)
    progress(0.97, f"asking {client.url} to install {new_id}")
    entry = client.commit_upload(token, f"{kind} '{new_id}'")
    progress(1.0, f"pushed {kind} {new_id} to {client.url} ({len(missing)} of {len(by_sha)} files sent)")
    return entry


def origin_report(store: Store, kind: str, item_id: str, api_key: str | None = None, ask: bool = True) -> str:
    """How a pulled entry compares with its origin: '' when it never came from one, otherwise a
    sentence (its files changed since the pull; or, with ``ask``, the origin holds another
    version now, holds the same, or could not be asked)."""
    manifest = read_manifest(entry_root(store, kind, item_id))
    origin = (manifest or {}).get("origin")
    if not origin:
        return ""
    local = entry_digest(travelling(kind, manifest).get("files", {}))
    if local != origin.get("digest"):
        return (f"differs from what was pulled from {origin.get('url')} (its files changed since); pull it again "
                f"with `workbench store pull {item_id} --from {origin.get('url')} --force`")
    if not ask:
        return f"the same as when pulled from {origin.get('url')}"
    from .remote import RemoteError
    from .remotes import key_for

    try:
        now = StoreClient(origin["url"], api_key or key_for(store, origin["url"]), timeout=10).entry(
            origin.get("kind", kind), origin.get("id", item_id))
    except (RemoteError, UnknownModelError) as err:
        return f"could not compare with its origin {origin.get('url')}: {err}"
    if now.digest != local:
        return (f"differs from its origin: {origin.get('url')} now holds another version of '{origin.get('id')}'; "
                f"pull it with `workbench store pull {item_id} --from {origin.get('url')}`")
    return f"the same as its origin {origin.get('url')}"


# --- the one-liner's remote store -------------------------------------------------------------

class RemoteStore:
    """Another workbench's store: ``Store(url=URL, api_key=KEY)``. Lists its catalog; pulls into
    the local store (``local``, the default store unless given); pushes local entries to it."""

    def __init__(self, url: str, api_key: str | None = None, local: Store | None = None, timeout: float = 30.0):
        self.client = StoreClient(url, api_key, timeout)
        self.url = self.client.url
        self._local = local

    def __repr__(self) -> str:
        return f"RemoteStore({self.url!r})"

    @property
    def local(self) -> Store:
        if self._local is None:
            raise WorkbenchError("This RemoteStore was made without a local store to pull into: make it with "
                                 "`Store(url=URL, api_key=KEY)` (the default store) or pass local=Store(HOME).")
        return self._local

    def list(self, kind: str | None = None) -> list[RemoteEntry]:
        """The remote catalog (every entry it holds, or those of ``kind``)."""
        return [e for e in self.client.index() if kind is None or e.kind == kind]

    def entry(self, item_id: str, kind: str | None = None) -> RemoteEntry:
        """One remote entry; without ``kind``, the one entry of that id in the index."""
        if kind is not None:
            return self.client.entry(kind, item_id)
        found = [e for e in self.client.index() if e.id == item_id]
        if not found:
            raise UnknownModelError(
                f"The store at {self.url} holds no '{item_id}'. List what it holds with "
                f"`workbench store list --from {self.url}`."
            )
        if len(found) > 1:
            raise WorkbenchError(f"The store at {self.url} holds several entries called '{item_id}' "
                                 f"({', '.join(e.kind for e in found)}): say which with --kind.")
        return found[0]

    def pull(self, item_id: str, kind: str | None = None, progress: Progress = quiet, force: bool = False) -> Path:
        """Install the remote entry into the local store (see ``transfer.pull``); its folder."""
        return pull(self.local, self.client, self.entry(item_id, kind), progress=progress, force=force)

    def download_model(self, name: str, progress: Progress = quiet, **load_options):
        """Pull the model if the local store lacks it (or holds an older pull of it) and return
        it loaded: ``Store(url=URL, api_key=KEY).download_model("gpt2").generate(text)``."""
        self.pull(name, "model", progress=progress)
        return self.local.download_model(name, progress=quiet, **load_options)

    def push(self, item_id: str, kind: str | None = None, as_id: str | None = None,
             progress: Progress = quiet) -> RemoteEntry:
        """Send a local entry there (see ``transfer.push``); the entry as the remote holds it."""
        return push(self.local, self.client, item_id, kind=kind, as_id=as_id, progress=progress)
