"""Knowledge files: read, check, and split into passages that keep their heading path.

A knowledge file's **text** is what ``knowledge_text(path)`` returns: the UTF-8 text of a ``.txt``
or ``.md`` file as it is (a BOM dropped, newlines untouched); for ``.html`` the visible text
(scripts and styles dropped, headings written as Markdown ``#`` lines); for ``.jsonl`` one block
per record (its ``title`` as a ``##`` heading, then its ``text``/``content``/other string values).
Every ``Passage`` is a span of that text: ``passage.text == knowledge_text(path)[start:end]``.

Refused with a ``KnowledgeError`` that says what to do: a missing, unreadable, empty, binary
(NUL bytes or not UTF-8), oversized (over ``MAX_FILE_BYTES``) file, or one in no supported format.
This module never indexes or ranks (see ``index``).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from ..errors import WorkbenchError

MAX_FILE_BYTES = 20 * 1024 * 1024
FORMATS = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown",
           ".html": "html", ".htm": "html", ".jsonl": "jsonl"}
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_BLANK = re.compile(r"\n[ \t]*\n")


class KnowledgeError(WorkbenchError, ValueError):
    """A knowledge file that cannot be used; the message says how to fix it."""


@dataclass(frozen=True)
class Passage:
    """A span ``[start, end)`` of a knowledge file's text, with the headings above it
    (``"Handbook > Opening hours"``, "" when there are none)."""

    file: str
    heading: str
    start: int
    end: int
    text: str


def file_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise KnowledgeError(
            f"{path.name} is in no format an app reads: use plain text (.txt), Markdown (.md), "
            "HTML (.html) or JSON Lines (.jsonl). Save it as one of those (e.g. export a PDF as text)."
        )
    return fmt


def knowledge_text(path: str | Path) -> str:
    """The text of a knowledge file (see the module docstring), checked."""
    path = Path(path)
    fmt = file_format(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise KnowledgeError(f"{path} is not a file; give a text, Markdown, HTML or JSONL file.")
        if size > MAX_FILE_BYTES:
            raise KnowledgeError(
                f"{path.name} is {size / 2**20:.0f} MB; a knowledge file may hold at most "
                f"{MAX_FILE_BYTES // 2**20} MB. Split it into smaller files or keep the parts that matter."
            )
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise KnowledgeError(f"{path} does not exist; check the path of the knowledge file.") from err
    except OSError as err:
        raise KnowledgeError(f"{path} could not be read ({err.strerror}); check its permissions.") from err
    if b"\x00" in data:
        raise KnowledgeError(f"{path.name} is a binary file, not text; save it as plain text or Markdown.")
    try:
        raw = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise KnowledgeError(
            f"{path.name} is not UTF-8 text (byte {err.start}); save it as UTF-8 (most editors offer it)."
        ) from err
    text = {"html": html_text, "jsonl": jsonl_text}.get(fmt, lambda t, n: t)(raw, path.name)
    if not text.strip():
        raise KnowledgeError(f"{path.name} holds no text; add some, or leave the file out.")
    return text


class _HTMLText(HTMLParser):
    _BLOCKS = frozenset({"p", "div", "li", "br", "tr", "section", "article", "table", "ul", "ol", "pre", "blockquote"})
    _SKIP = frozenset({"script", "style", "template", "noscript", "head"})

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in self._SKIP:
            self.skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag in self._BLOCKS:
            self.parts.append("\n\n" if tag != "br" else "\n")

    def handle_endtag(self, tag):
        if tag in self._SKIP:
            self.skip = max(self.skip - 1, 0)
        elif re.fullmatch(r"h[1-6]", tag) or tag in self._BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(re.sub(r"[ \t\r\n]+", " ", data))


def html_text(raw: str, name: str = "file.html") -> str:
    """Visible text of an HTML document; headings as Markdown lines; scripts never run or kept."""
    parser = _HTMLText()
    parser.feed(raw)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t]*\n[ \t]*", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def jsonl_text(raw: str, name: str = "file.jsonl") -> str:
    """One block per JSON record: ``## title`` then its text fields."""
    blocks = []
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise KnowledgeError(f"{name} line {n} is not JSON ({err.msg}); fix it or save the file as .txt.") from err
        if isinstance(record, str):
            blocks.append(record)
            continue
        if not isinstance(record, dict):
            raise KnowledgeError(f"{name} line {n} must be a JSON object or string.")
        title = next((str(record[k]) for k in ("title", "heading", "name") if isinstance(record.get(k), str)), "")
        keys = [k for k in ("text", "content", "body") if isinstance(record.get(k), str)]
        keys = keys or [k for k, v in record.items() if isinstance(v, str) and k not in ("title", "heading", "name")]
        body = "\n".join(str(record[k]) for k in keys)
        blocks.append((f"## {title}\n" if title else "") + body)
    return "\n\n".join(blocks) + "\n"


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _pieces(text: str, start: int, end: int, limit: int) -> list[tuple[int, int]]:
    """Split ``[start, end)`` into spans of at most ``limit`` characters, at blank lines where it
    can, else at whitespace, else anywhere."""
    start, end = _strip(text, start, end)
    if end - start <= limit:
        return [(start, end)] if end > start else []
    cut = -1
    for m in _BLANK.finditer(text, start, start + limit + 1):
        if m.start() > start:
            cut = m.start()
    if cut < 0:
        cut = text.rfind(" ", start, start + limit)
        if cut <= start:
            cut = text.rfind("\n", start, start + limit)
    if cut <= start:
        cut = start + limit
    return _pieces(text, start, cut, limit) + _pieces(text, cut, end, limit)


_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*[ \t]+(?=[A-Z0-9\"'(\[*_`])")
_LIST_ITEM = re.compile(r"\n(?=[ \t]*(?:[-*+]|\d+[.)])[ \t])")
_PLAIN_START = re.compile(r"[ \t]*(?:[-*+]|\d+[.)])?[ \t]*[\w\"'(*_]")
PASSAGE_TARGET_CHARS = 1  # one sentence or list item a passage (0: whole sections); see split_passages


def _units(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The smallest pieces of ``[start, end)`` a passage is built from: the sentences of prose
    paragraphs and the items of lists; a code block, table or other paragraph stays whole."""
    units: list[tuple[int, int]] = []
    para_start = start
    bounds = [m.start() for m in _BLANK.finditer(text, start, end)] + [end]
    for cut in bounds:
        a, b = _strip(text, para_start, cut)
        para_start = cut
        if a >= b:
            continue
        para = text[a:b]
        if not _PLAIN_START.match(para) or para.lstrip().startswith(("```", "|", "~~~", "    ")):
            units.append((a, b))
            continue
        starts = [a] + [a + m.end() for m in _LIST_ITEM.finditer(para)]
        for i, s0 in enumerate(starts):
            s1 = starts[i + 1] if i + 1 < len(starts) else b
            pos = s0
            for m in _SENTENCE_END.finditer(text, s0, s1):
                units.append(_strip(text, pos, m.start()))
                pos = m.end()
            units.append(_strip(text, pos, s1))
    return [(a, b) for a, b in units if b > a]


def _packed(text: str, start: int, end: int, target: int, limit: int) -> list[tuple[int, int]]:
    """Consecutive units of ``[start, end)`` packed into spans of about ``target`` characters
    (a span grows while it stays within ``target``; a longer unit stands alone, cut at ``limit``)."""
    spans: list[tuple[int, int]] = []
    for a, b in _units(text, start, end):
        if spans and b - spans[-1][0] <= target:
            spans[-1] = (spans[-1][0], b)
        else:
            spans.append((a, b))
    return [piece for a, b in spans for piece in _pieces(text, a, b, limit)]


def split_passages(name: str, text: str, max_chars: int = 1200, target_chars: int | None = None) -> list[Passage]:
    """The passages of one file's text, in order. The text is cut into Markdown sections (a heading
    line and what follows it up to the next heading; text before the first heading is a section
    without heading). A passage's ``heading`` is the path of headings over it.

    ``target_chars`` (default ``PASSAGE_TARGET_CHARS``) 0: each section is one passage, cut at
    paragraph breaks into spans of at most ``max_chars``. Over 0: a section's body (its heading
    line left out: the heading travels in ``heading``) is cut into sentences and list items, and
    consecutive ones are packed into passages of at most ``target_chars`` (a longer sentence is a
    passage alone, cut at ``max_chars``); a section with no body gives its heading line. Spans are
    exact either way: ``passage.text == text[start:end]``, no surrounding whitespace."""
    target = PASSAGE_TARGET_CHARS if target_chars is None else target_chars
    bounds: list[tuple[int, int, int, str]] = []  # (start, body start, end, heading path)
    stack: list[tuple[int, str]] = []
    heads = list(_HEADING.finditer(text))
    if not heads or heads[0].start() > 0:
        first = heads[0].start() if heads else len(text)
        bounds.append((0, 0, first, ""))
    for i, m in enumerate(heads):
        level = len(m.group(1))
        stack = [(lv, t) for lv, t in stack if lv < level] + [(level, m.group(2).strip())]
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        bounds.append((m.start(), m.end(), end, " > ".join(t for _, t in stack)))
    passages = []
    for start, body, end, heading in bounds:
        if target <= 0:
            spans = _pieces(text, start, end, max_chars)
        else:
            spans = _packed(text, body, end, target, max_chars) or _pieces(text, start, body, max_chars)
        passages += [Passage(name, heading, a, b, text[a:b]) for a, b in spans]
    return passages
