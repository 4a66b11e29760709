"""App cards: an assistant built on a store model, as data (``app.toml``).

``parse_app_card(data)`` turns the TOML table into a frozen ``AppCard`` and refuses every bad
field with a ``CardError`` that names the field and the fix; ``AppCard.to_toml()`` writes it back
(``parse_app_card(tomllib.loads(card.to_toml())) == card``). This module reads and writes text
only: it never touches the store, knowledge files or a model.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import tomllib

from ..errors import CardError
from ..store.catalog import ID_PATTERN

PLACEMENTS = ("system", "user")
KNOWLEDGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")  # a flattened, safe file name
MAX_TEXT = 20_000  # characters of instructions, greeting, an example turn
MAX_STARTERS = 12
MAX_KNOWLEDGE_FILES = 50
_TOP_KEYS = {"id", "name", "description", "author", "license", "version", "base_model", "instructions",
             "greeting", "starters", "examples", "generation", "knowledge", "tests"}


@dataclass(frozen=True)
class Example:
    """One few-shot turn: what the user said and what the assistant answered."""

    user: str
    assistant: str


@dataclass(frozen=True)
class AppTest:
    """A test question; an answer passes when it contains one of ``answers`` (case-insensitive)."""

    question: str
    answers: tuple[str, ...]


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings; ``temperature = 0`` means greedy. ``stop``: strings that end the answer."""

    temperature: float = 0.0
    top_p: float = 0.95
    top_k: int = 50
    max_new_tokens: int = 128
    stop: tuple[str, ...] = ()
    seed: int = 0


@dataclass(frozen=True)
class KnowledgeSettings:
    """Knowledge files (``knowledge/<name>`` inside the entry) and how passages are retrieved:
    the ``passages`` best by BM25 go into the ``placement`` turn, each at most
    ``max_passage_chars`` characters."""

    files: tuple[str, ...] = ()
    passages: int = 1
    placement: str = "system"
    max_passage_chars: int = 1200


@dataclass(frozen=True)
class AppCard:
    id: str
    name: str
    base_model: str
    description: str = ""
    author: str = ""
    license: str = ""
    version: str = "1.0"
    instructions: str = ""
    greeting: str = ""
    starters: tuple[str, ...] = ()
    examples: tuple[Example, ...] = ()
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    knowledge: KnowledgeSettings = field(default_factory=KnowledgeSettings)
    tests: tuple[AppTest, ...] = ()

    @property
    def knowledge_names(self) -> tuple[str, ...]:
        """The knowledge files' names inside ``knowledge/``."""
        return tuple(f.split("/", 1)[1] for f in self.knowledge.files)

    def with_changes(self, **changes) -> AppCard:
        """A copy with top-level fields replaced, validated again."""
        return parse_app_card(json.loads(json.dumps(asdict(replace(self, **changes)))), "card")

    def to_json(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    def to_toml(self) -> str:
        """The card as TOML text (strings through JSON escaping, which TOML reads)."""
        d = self.to_json()
        lines = []
        for key in ("id", "name", "description", "author", "license", "version", "base_model",
                    "instructions", "greeting", "starters"):
            lines.append(f"{key} = {_value(d[key])}")
        for table in ("generation", "knowledge"):
            lines.append(f"\n[{table}]")
            lines += [f"{k} = {_value(v)}" for k, v in d[table].items()]
        for ex in d["examples"]:
            lines += ["\n[[examples]]", f"user = {_value(ex['user'])}", f"assistant = {_value(ex['assistant'])}"]
        for t in d["tests"]:
            lines += ["\n[[tests]]", f"question = {_value(t['question'])}", f"answers = {_value(t['answers'])}"]
        return "\n".join(lines) + "\n"


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _str(data: dict, key: str, where: str, default: str | None = None, limit: int = 1000) -> str:
    value = data.get(key, default)
    if value is None:
        raise CardError(f"{where}: `{key}` is missing. Add `{key} = \"...\"` to the app card.")
    if not isinstance(value, str):
        raise CardError(f"{where}: `{key}` must be a string in quotes, not {type(value).__name__}.")
    if len(value) > limit:
        raise CardError(f"{where}: `{key}` has {len(value):,} characters; at most {limit:,} are allowed. Shorten it.")
    return value


def _strings(data: dict, key: str, where: str, limit: int = MAX_STARTERS) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise CardError(f"{where}: `{key}` must be a list of strings, e.g. {key} = [\"...\", \"...\"].")
    if len(value) > limit:
        raise CardError(f"{where}: `{key}` has {len(value)} entries; at most {limit} are allowed.")
    return tuple(value)


def _number(data: dict, key: str, where: str, default, kind, lo, hi):
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, kind) or not lo <= value <= hi:
        what = "a whole number" if kind is int else "a number"
        raise CardError(f"{where}: `{key}` is {value!r}; it must be {what} from {lo} to {hi}.")
    return value


def _table(data: dict, key: str, where: str, known: set[str]) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise CardError(f"{where}: `[{key}]` must be a table.")
    unknown = set(value) - known
    if unknown:
        raise CardError(f"{where}: unknown keys {sorted(unknown)} in [{key}]; known: {sorted(known)}.")
    return value


def check_app_id(app_id, where: str = "app") -> str:
    """The id rules of models and datasets (lower case, digits, ``.-_``, at most 64)."""
    if not isinstance(app_id, str) or not ID_PATTERN.match(app_id):
        raise CardError(
            f"{where}: the id {app_id!r} is not valid: use lower-case letters, digits, '.', '-' and '_' "
            "(starting with a letter or digit, at most 64), e.g. `club-helper`."
        )
    return app_id


def parse_app_card(data: dict, where: str = "app card") -> AppCard:
    """Validate a parsed ``app.toml`` table into an ``AppCard`` (``CardError`` with the fix)."""
    if not isinstance(data, dict):
        raise CardError(f"{where}: an app card is a TOML table.")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise CardError(f"{where}: unknown keys {sorted(unknown)}; an app card knows {sorted(_TOP_KEYS)}.")
    app_id = check_app_id(data.get("id"), where)
    base = _str(data, "base_model", where)
    if not ID_PATTERN.match(base):
        raise CardError(f"{where}: base_model {base!r} is not a store model id; see `workbench store list`.")
    g = _table(data, "generation", where, {"temperature", "top_p", "top_k", "max_new_tokens", "stop", "seed"})
    gen = GenerationSettings(
        temperature=float(_number(g, "temperature", where, 0.0, (int, float), 0.0, 2.0)),
        top_p=float(_number(g, "top_p", where, 0.95, (int, float), 0.01, 1.0)),
        top_k=_number(g, "top_k", where, 50, int, 0, 100_000),
        max_new_tokens=_number(g, "max_new_tokens", where, 128, int, 1, 4096),
        stop=_strings(g, "stop", where, limit=8),
        seed=_number(g, "seed", where, 0, int, 0, 2**32 - 1),
    )
    if any(not s for s in gen.stop):
        raise CardError(f"{where}: an empty stop string would end every answer at once; remove it.")
    k = _table(data, "knowledge", where, {"files", "passages", "placement", "max_passage_chars"})
    files = _strings(k, "files", where, limit=MAX_KNOWLEDGE_FILES)
    for f in files:
        folder, _, name = f.partition("/")
        if folder != "knowledge" or not KNOWLEDGE_NAME.match(name):
            raise CardError(
                f"{where}: knowledge file {f!r} must be `knowledge/<name>` with a plain file name "
                "(letters, digits, '.', '-', '_'), e.g. \"knowledge/handbook.md\"."
            )
    if len(set(files)) != len(files):
        raise CardError(f"{where}: a knowledge file is listed twice; list each once.")
    placement = k.get("placement", "system")
    if placement not in PLACEMENTS:
        raise CardError(f"{where}: knowledge placement is {placement!r}; use \"system\" or \"user\".")
    know = KnowledgeSettings(
        files=files,
        passages=_number(k, "passages", where, 1, int, 1, 8),
        placement=placement,
        max_passage_chars=_number(k, "max_passage_chars", where, 1200, int, 200, 20_000),
    )
    examples = []
    for i, ex in enumerate(data.get("examples", [])):
        if not isinstance(ex, dict) or set(ex) != {"user", "assistant"}:
            raise CardError(f"{where}: example {i + 1} needs exactly `user = \"...\"` and `assistant = \"...\"`.")
        examples.append(Example(_str(ex, "user", where, limit=MAX_TEXT), _str(ex, "assistant", where, limit=MAX_TEXT)))
    tests = []
    for i, t in enumerate(data.get("tests", [])):
        if not isinstance(t, dict) or set(t) != {"question", "answers"}:
            raise CardError(f"{where}: test {i + 1} needs exactly `question = \"...\"` and `answers = [\"...\"]`.")
        answers = _strings(t, "answers", where, limit=20)
        if not answers or not all(a.strip() for a in answers):
            raise CardError(f"{where}: test {i + 1} needs at least one accepted answer that is not empty.")
        tests.append(AppTest(_str(t, "question", where, limit=MAX_TEXT), answers))
    return AppCard(
        id=app_id,
        name=_str(data, "name", where, default=app_id, limit=200) or app_id,
        base_model=base,
        description=_str(data, "description", where, "", limit=4000),
        author=_str(data, "author", where, "", limit=200),
        license=_str(data, "license", where, "", limit=400),
        version=_str(data, "version", where, "1.0", limit=40),
        instructions=_str(data, "instructions", where, "", limit=MAX_TEXT),
        greeting=_str(data, "greeting", where, "", limit=MAX_TEXT),
        starters=_strings(data, "starters", where),
        examples=tuple(examples),
        generation=gen,
        knowledge=know,
        tests=tuple(tests),
    )


def parse_app_toml(text: str, where: str = "app.toml") -> AppCard:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise CardError(f"{where} is not valid TOML ({err}). Fix the line it names.") from err
    return parse_app_card(data, where)


def read_app_card(path: str | Path) -> AppCard:
    """Read and validate an ``app.toml``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise CardError(f"Could not read the app card {path} ({err}).") from err
    return parse_app_toml(text, str(path))
