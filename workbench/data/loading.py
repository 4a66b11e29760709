"""A dataset ready to use: its documents by split, with the id and sha256 that name it.

``load_dataset(store, spec)`` takes a store dataset id (installed on first use) or the path of
a user's file (read and split in place, nothing written). Documents are strings or chat message
lists (see ``formats``); nothing is tokenized here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..common import Progress, quiet
from ..errors import DatasetFormatError
from ..store import Store
from ..store.sources import sha256_file
from .formats import Document, hold_out, read_documents
from .install import (
    MANIFEST,
    SPLIT_FILES,
    catalog,
    dataset_dir,
    install_dataset,
    is_installed,
)


@dataclass(frozen=True)
class Dataset:
    """``train`` and ``eval`` are lists of documents; ``sha256`` pins the bytes they came from."""

    id: str
    name: str
    format: str
    sha256: str
    train: list[Document]
    eval: list[Document]
    source: str

    def describe(self) -> dict:
        return {"id": self.id, "name": self.name, "format": self.format, "sha256": self.sha256,
                "train_documents": len(self.train), "eval_documents": len(self.eval), "source": self.source}


def _read_split(path: Path) -> list[Document]:
    docs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if "text" in record:
            docs.append(record["text"])
        elif "prompt" in record:
            docs.append({"prompt": record["prompt"], "completion": record["completion"]})
        else:
            docs.append(record["messages"])
    return docs


def looks_like_path(spec: str) -> bool:
    return "/" in spec or "\\" in spec or Path(spec).suffix.lower() in (".txt", ".jsonl", ".json", ".md", ".ndjson")


def load_dataset(store: Store, spec: str, install: bool = True, progress: Progress = quiet) -> Dataset:
    """A store dataset (by id; installed first when ``install``) or a user's file (by path)."""
    spec = str(spec).strip()
    if not spec:
        raise DatasetFormatError("No dataset given: name a store dataset (e.g. 'shakespeare') or a file.")
    path = Path(spec).expanduser()
    if path.is_file() or looks_like_path(spec):
        fmt, docs = read_documents(path)
        train, held = hold_out(docs, path.name)
        return Dataset(f"file:{path.name}", path.name, fmt, sha256_file(path), train, held, str(path.resolve()))
    card = catalog(store).get(spec)
    if not is_installed(store, card.id):
        if not install:
            raise DatasetFormatError(
                f"Dataset '{card.id}' is not installed. Install it: `workbench datasets install {card.id}`."
            )
        install_dataset(store, card.id, progress=progress)
    folder = dataset_dir(store, card.id)
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    return Dataset(
        card.id, card.name, card.format, card.source.sha256,
        _read_split(folder / SPLIT_FILES["train"]), _read_split(folder / SPLIT_FILES["eval"]),
        manifest.get("source", card.source.describe()),
    )
