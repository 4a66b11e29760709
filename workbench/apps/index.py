"""The passage index of an app: SQLite FTS5 (standard library), BM25 ranking, nothing downloaded.

``build_index(path, passages, sources)`` writes a fresh database file (callers write it into a
staging folder or a temp name and rename it into place); ``search(path, question, k)`` returns
the ``k`` best passages with their scores (higher is better: minus FTS5's ``bm25()``).

Queries are built from the question's words: lower-cased, stop words and one- or two-letter
words dropped, each quoted and OR-ed, matched through the ``porter`` tokenizer (so "opens"
finds "opening"). A question with no word left finds nothing.

An index records the schema it was written with; ``indexed_sources`` refuses one of another
schema (``KnowledgeIndexError``), so an app saved by an older version (other passages) is
rebuilt on its next turn like one whose files changed.
"""
from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from ..errors import WorkbenchError
from .knowledge import Passage

SCHEMA_VERSION = 3  # 3: sentence-sized passages (knowledge.PASSAGE_TARGET_CHARS = 1)
STOP_WORDS = frozenset(["a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any", "are", "aren't", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "me", "more", "most", "my", "myself", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "ourselves", "out", "over", "own", "same", "she", "should", "so", "some", "such", "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours", "yourself", "yourselves", "tell", "please", "does", "say", "said", "give", "know", "get"])


class KnowledgeIndexError(WorkbenchError):
    """The index cannot be built or read."""


def check_fts5() -> None:
    """Raise with the fix when this Python's SQLite lacks FTS5."""
    con = sqlite3.connect(":memory:")
    try:
        con.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='porter unicode61')")
    except sqlite3.OperationalError as err:
        raise KnowledgeIndexError(
            f"This Python's SQLite ({sqlite3.sqlite_version}) has no FTS5, which app knowledge needs: "
            "use a Python built with a standard SQLite (python.org, conda, or your distribution's python3)."
        ) from err
    finally:
        con.close()


def build_index(path: str | Path, passages: list[Passage], sources: dict[str, str]) -> Path:
    """Write the index of ``passages`` to ``path`` (replaced if there). ``sources`` maps each
    knowledge file's name to the sha256 of its bytes, so a later change can be seen."""
    check_fts5()
    path = Path(path)
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    try:
        with con:
            con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
            con.execute("CREATE TABLE sources (file TEXT PRIMARY KEY, sha256 TEXT)")
            con.execute("CREATE TABLE passages (id INTEGER PRIMARY KEY, file TEXT, heading TEXT, "
                        "start INTEGER, end INTEGER, text TEXT)")
            con.execute("CREATE VIRTUAL TABLE fts USING fts5(heading, text, content='passages', "
                        "content_rowid='id', tokenize='porter unicode61')")
            con.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            con.executemany("INSERT INTO sources VALUES (?, ?)", sorted(sources.items()))
            for i, p in enumerate(passages, 1):
                con.execute("INSERT INTO passages VALUES (?, ?, ?, ?, ?, ?)", (i, p.file, p.heading, p.start, p.end, p.text))
                con.execute("INSERT INTO fts (rowid, heading, text) VALUES (?, ?, ?)", (i, p.heading, p.text))
    finally:
        con.close()
    return path


def _connect(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise KnowledgeIndexError(f"{path} is missing; save the app again to rebuild its index.")
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def indexed_sources(path: str | Path) -> dict[str, str]:
    """``{file name: sha256}`` of the files the index was built from."""
    con = _connect(Path(path))
    try:
        schema = con.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if schema is None or schema[0] != str(SCHEMA_VERSION):
            raise KnowledgeIndexError(f"{path} was written by another version (schema {schema and schema[0]}, "
                                      f"this one reads {SCHEMA_VERSION}); save the app again to rebuild it.")
        return dict(con.execute("SELECT file, sha256 FROM sources").fetchall())
    except sqlite3.DatabaseError as err:
        raise KnowledgeIndexError(f"{path} is not a readable index ({err}); save the app again.") from err
    finally:
        con.close()


def query_terms(question: str, stop_words: bool = True) -> list[str]:
    """The words of ``question`` that go to the index (see the module docstring), in order, once
    each; ``stop_words=False`` keeps the stop words (the benchmark measures both)."""
    words = re.findall(r"\w+", question.lower())
    seen: dict[str, None] = {}
    for w in words:
        if len(w) > 2 and (w not in STOP_WORDS or not stop_words):
            seen.setdefault(w, None)
    return list(seen)


def search(path: str | Path, question: str, k: int = 1, stop_words: bool = True) -> list[tuple[Passage, float]]:
    """The ``k`` best passages for ``question`` by BM25, best first, with scores (higher better);
    ties keep the files' order. ``stop_words``: as in ``query_terms``."""
    terms = query_terms(question, stop_words)
    if not terms or k < 1:
        return []
    match = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
    con = _connect(Path(path))
    try:
        rows = con.execute(
            "SELECT p.file, p.heading, p.start, p.end, p.text, bm25(fts) AS rank FROM fts "
            "JOIN passages p ON p.id = fts.rowid WHERE fts MATCH ? ORDER BY rank, p.id LIMIT ?",
            (match, int(k)),
        ).fetchall()
    except sqlite3.DatabaseError as err:
        raise KnowledgeIndexError(f"{path} is not a readable index ({err}); save the app again.") from err
    finally:
        con.close()
    return [(Passage(f, h, s, e, t), -float(r)) for f, h, s, e, t, r in rows]
