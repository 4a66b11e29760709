"""Data for the Apps page: store-front rows, the create/edit form as a card, uploads written to
a folder, labels of citations, and the hand-off of an answer's exact prompt to other pages.

Plain data in, plain data out: nothing here draws, imports Streamlit or loads a model.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..apps.card import AppCard, parse_app_card
from ..apps.catalog import MANIFEST, AppEntry, app_dir, flat_name, list_apps
from ..apps.evaluation import TestStatus, test_status
from ..common import atomic_write_bytes
from ..errors import CardError

KNOWLEDGE_TYPES = ("txt", "md", "markdown", "html", "htm", "jsonl")
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>$~:])")


def md(text: str) -> str:
    """``text`` placed in Markdown shows as typed: no formatting, links, HTML or LaTeX."""
    return _MARKDOWN.sub(r"\\\1", text)


@dataclass(frozen=True)
class FrontRow:
    """One app on the store front: its listing entry and the state of its own tests."""

    entry: AppEntry
    tests: TestStatus

    @property
    def id(self) -> str:
        return self.entry.card.id

    @property
    def tests_line(self) -> str:
        """"9/10 of its own tests, measured here on DATE", stale with why, or never run."""
        if not self.entry.card.tests:
            return "no tests of its own"
        return self.tests.describe()


def front_rows(store, problems: list | None = None) -> list[FrontRow]:
    """Every app of the store (built-ins included), sorted by id, with its test status. A
    malformed installed app is left out and ``(path, message)`` appended to ``problems``."""
    rows = []
    for entry in list_apps(store, problems):
        status = test_status(store, entry.card.id) if entry.installed else TestStatus(
            "none", "never run here", None)
        rows.append(FrontRow(entry, status))
    return rows


def lines(text: str) -> list[str]:
    """Non-empty lines of a text box, stripped (starters, stop strings: one a line)."""
    return [s.strip() for s in (text or "").splitlines() if s.strip()]


def stops_text(stops) -> str:
    """Stop strings for a one-a-line text box, escaped as in JSON (a line break reads ``\\n``)."""
    return "\n".join(json.dumps(x, ensure_ascii=False)[1:-1] for x in stops)


def stops_from_text(text: str) -> list[str]:
    """The inverse of ``stops_text``; a line that is not valid escaped text is refused."""
    out = []
    for line in lines(text):
        try:
            out.append(json.loads(f'"{line}"'))
        except json.JSONDecodeError as err:
            raise CardError(f"The stop string {line!r} is not valid: write a line break as \\n, a quote as \\\".") from err
    return out


def card_from_form(form: dict, existing: AppCard | None = None) -> AppCard:
    """An ``AppCard`` from the form's values (``id``, ``name``, ``base_model``, ``description``,
    ``instructions``, ``greeting``, ``starters`` text, ``temperature``, ``top_p``, ``top_k``,
    ``max_new_tokens``, ``stop`` text, ``seed``, ``passages``, ``placement``,
    ``max_passage_chars``). What the form does not edit (author, licence, version, example turns,
    tests) is kept from ``existing``. ``CardError`` names the field and the fix."""
    base = existing.to_json() if existing is not None else {}
    data = {k: base[k] for k in ("author", "license", "version", "examples", "tests") if k in base}
    data.update(
        id=(form.get("id") or "").strip(),
        name=(form.get("name") or "").strip() or (form.get("id") or "").strip(),
        base_model=form.get("base_model") or "",
        description=form.get("description") or "",
        instructions=form.get("instructions") or "",
        greeting=form.get("greeting") or "",
        starters=lines(form.get("starters", "")),
        generation={"temperature": float(form.get("temperature", 0.0)), "top_p": float(form.get("top_p", 0.95)),
                    "top_k": int(form.get("top_k", 50)), "max_new_tokens": int(form.get("max_new_tokens", 128)),
                    "stop": stops_from_text(form.get("stop", "")), "seed": int(form.get("seed", 0))},
        knowledge={"passages": int(form.get("passages", 1)), "placement": form.get("placement", "system"),
                   "max_passage_chars": int(form.get("max_passage_chars", 1200))},
    )
    if not data["base_model"]:
        raise CardError("Pick a base model: install one on the Store page first if the list is empty.")
    return parse_app_card(data, "the form")


def form_values(card: AppCard) -> dict:
    """The form's values for ``card`` (the inverse of ``card_from_form`` on what the form edits)."""
    g, k = card.generation, card.knowledge
    return {"id": card.id, "name": card.name, "base_model": card.base_model, "description": card.description,
            "instructions": card.instructions, "greeting": card.greeting, "starters": "\n".join(card.starters),
            "temperature": g.temperature, "top_p": g.top_p, "top_k": g.top_k, "max_new_tokens": g.max_new_tokens,
            "stop": stops_text(g.stop), "seed": g.seed, "passages": k.passages, "placement": k.placement,
            "max_passage_chars": k.max_passage_chars}


def write_uploads(folder: str | Path, files) -> list[Path]:
    """Write uploaded ``(name, bytes)`` pairs into ``folder`` (each file atomically, its name
    flattened as the app's knowledge names are) and return their paths. Two uploads that flatten
    to one name are refused (``CardError``)."""
    folder = Path(folder)
    paths = []
    for name, data in files:
        path = folder / flat_name(name)
        if path in paths:
            raise CardError(f"Two uploaded files are both named {path.name}; rename one and upload again.")
        atomic_write_bytes(path, data)
        paths.append(path)
    return paths


def knowledge_paths(store, app_id: str, keep) -> list[Path]:
    """The installed app's knowledge files named in ``keep`` (paths inside its entry)."""
    folder = app_dir(store, app_id) / "knowledge"
    return [folder / name for name in keep]


def is_installed(store, app_id: str) -> bool:
    """Whether the app is installed in the store now (a built-in one not yet copied in is not)."""
    return (app_dir(store, app_id) / MANIFEST).is_file()


def free_id(store, wanted: str) -> str:
    """``wanted`` if no app or model has it, else ``wanted-2``, ``wanted-3``…"""
    taken = {e.card.id for e in list_apps(store)}
    candidate, n = wanted, 1
    while candidate in taken or store.catalog.resolve(candidate) is not None:
        n += 1
        candidate = f"{wanted[:60]}-{n}"
    return candidate


def citation_title(index: int, citation) -> str:
    """The label of a citation's expander: number, file, heading, span and score."""
    where = f"{citation.file} › {citation.heading}" if citation.heading else citation.file
    return f"[{index}] {where} · characters {citation.start}–{citation.end} · score {citation.score:.2f}"


def handoff(app_id: str, answer) -> dict:
    """What the Attention and Inside pages need of an ``AppAnswer``: the exact prompt sent (its
    chat template and passages included), the answer, the base model and the citations."""
    return {"app": app_id, "model": answer.model, "prompt": answer.prompt, "answer": answer.text,
            "citations": [c.to_json() for c in answer.citations]}


def handed_ids(tokenizer, handed: dict, chat: bool) -> list[int]:
    """Token ids of the handed prompt and answer as the app sent them: a templated prompt
    (``chat``) already holds its special tokens in the text, so none are added; a plain one gets
    the tokenizer's own, as the app's generation did. The answer's text is tokenized on its own."""
    prompt = tokenizer(handed["prompt"], add_special_tokens=not chat)["input_ids"]
    answer = tokenizer(handed["answer"], add_special_tokens=False)["input_ids"] if handed["answer"] else []
    return list(prompt) + list(answer)
