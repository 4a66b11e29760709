"""Read a user's text file into documents, split off a held-out part, and render documents as
text for a model.

A *document* is one of three shapes:

- a string (plain text, JSONL ``text``): the loss counts every token;
- a prompt and its completion, ``{"prompt", "completion"}`` (an Alpaca record: the Alpaca prompt
  around ``instruction``/``input``, then ``output``), TRL's prompt-completion layout: fine-tuning
  counts only the completion's tokens in the loss;
- a list of chat messages (``[{"role", "content"}, ...]``), which only a tokenizer with a chat
  template can render (``render``): fine-tuning counts only the assistant turns.

Formats:

- ``text``: a ``.txt`` file, one document.
- ``jsonl-text``: one JSON object per line with a string ``text``.
- ``alpaca``: one JSON object per line with ``instruction``, optional ``input``, ``output``.
- ``chat``: one JSON object per line with ``messages`` (a list of ``{"role", "content"}``).

The names are ``FORMATS``, defined with the dataset card's schema (``workbench.store.dataset_cards``).

The format of a JSONL file is read from its first record. No tokenization here (see
``workbench.finetune.data`` and ``workbench.quality``); no torch.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import DatasetFormatError
from ..store.dataset_cards import FORMATS  # the card schema names the formats; they are read here

Document = str | dict | list  # text | {"prompt", "completion"} | chat messages
MIN_CHARS = 200  # less text than this cannot be split into training and held-out parts
HOLD_OUT_EVERY = 10  # every 10th record (or the last tenth of a text) is held out
ALPACA_PROMPT = "### Instruction:\n{instruction}\n\n{input_block}### Response:\n"  # then the output
_FIX = ("Use a .txt file, or a .jsonl file with one JSON object per line holding 'text', "
        "'instruction'/'input'/'output' (Alpaca) or 'messages' (chat).")


def detect_format(path: Path) -> str:
    """``text`` for ``.txt``/``.md``; for ``.jsonl``/``.json`` the format of the first record."""
    path = Path(path)
    if path.suffix.lower() in (".txt", ".md", ".text"):
        return "text"
    if path.suffix.lower() not in (".jsonl", ".json", ".ndjson"):
        raise DatasetFormatError(f"{path.name}: '{path.suffix or 'no suffix'}' is not a dataset format. {_FIX}")
    for line in _lines(path):
        if line.strip():
            return _record_format(_parse(line, path, 1), path, 1)
    raise DatasetFormatError(f"{path.name} is empty. {_FIX}")


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise DatasetFormatError(f"{path.name} is not UTF-8 text ({err}). Save it as UTF-8. {_FIX}") from err
    except OSError as err:
        raise DatasetFormatError(f"Cannot read {path}: {err}. Check the path.") from err


def _parse(line: str, path: Path, number: int) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise DatasetFormatError(
            f"{path.name}, line {number}: not JSON ({err.msg}). Each line of a .jsonl file must be "
            "one JSON object: fix or delete that line."
        ) from err
    if not isinstance(record, dict):
        raise DatasetFormatError(f"{path.name}, line {number}: a JSON object is needed, got {type(record).__name__}.")
    return record


def _record_format(record: dict, path: Path, number: int) -> str:
    if isinstance(record.get("messages"), list):
        return "chat"
    if "instruction" in record and "output" in record:
        return "alpaca"
    if isinstance(record.get("text"), str):
        return "jsonl-text"
    raise DatasetFormatError(
        f"{path.name}, line {number}: the record has keys {sorted(record)}, none of the known "
        f"layouts. {_FIX}"
    )


def _document(record: dict, fmt: str, path: Path, number: int) -> Document:
    where = f"{path.name}, line {number}"
    if fmt == "jsonl-text":
        if not isinstance(record.get("text"), str):
            raise DatasetFormatError(f"{where}: 'text' must be a string, like the first record's.")
        return record["text"]
    if fmt == "alpaca":
        if not all(isinstance(record.get(k, ""), str) for k in ("instruction", "input", "output")) \
                or "instruction" not in record or "output" not in record:
            raise DatasetFormatError(f"{where}: an Alpaca record needs string 'instruction' and 'output'.")
        extra = record.get("input", "")
        prompt = ALPACA_PROMPT.format(instruction=record["instruction"],
                                      input_block=f"### Input:\n{extra}\n\n" if extra else "")
        return {"prompt": prompt, "completion": record["output"]}
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in messages
    ):
        raise DatasetFormatError(f"{where}: 'messages' must be a non-empty list of {{'role', 'content'}} strings.")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def read_documents(path: str | Path, fmt: str | None = None) -> tuple[str, list[Document]]:
    """``(format, documents)`` of a user's file; ``DatasetFormatError`` names the line to fix."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetFormatError(f"{path} is not a file. Give the path of a .txt or .jsonl file.")
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise DatasetFormatError(f"Unknown format '{fmt}': use one of {', '.join(FORMATS)}.")
    if fmt == "text":
        text = "\n".join(_lines(path))
        return fmt, [text] if text.strip() else []
    docs = []
    for number, line in enumerate(_lines(path), 1):
        if line.strip():
            docs.append(_document(_parse(line, path, number), fmt, path, number))
    return fmt, docs


def is_pair(doc: Document) -> bool:
    """True for a ``{"prompt", "completion"}`` document."""
    return isinstance(doc, dict) and isinstance(doc.get("prompt"), str) and isinstance(doc.get("completion"), str)


def document_chars(doc: Document) -> int:
    if isinstance(doc, str):
        return len(doc)
    if is_pair(doc):
        return len(doc["prompt"]) + len(doc["completion"])
    return sum(len(m["content"]) for m in doc)


def hold_out(documents: list[Document], name: str = "the dataset") -> tuple[list[Document], list[Document]]:
    """``(train, eval)``: every ``HOLD_OUT_EVERY``-th document is held out whole; one document (a
    plain text) is cut at the line nearest its last tenth. Deterministic; raises when there is too
    little text to train on and to measure."""
    total = sum(document_chars(d) for d in documents)
    if not documents or total == 0:
        raise DatasetFormatError(f"{name} holds no text. Give a file with some text in it.")
    if total < MIN_CHARS:
        raise DatasetFormatError(
            f"{name} holds only {total} characters; fine-tuning and a held-out measurement need at "
            f"least {MIN_CHARS} (a few paragraphs). Add more text."
        )
    if len(documents) == 1:
        doc = documents[0]
        if not isinstance(doc, str):
            raise DatasetFormatError(f"{name} holds one record; give at least two to hold one out.")
        cut = doc.rfind("\n", 0, int(len(doc) * 0.9))
        cut = cut if cut > len(doc) // 2 else int(len(doc) * 0.9)
        return [doc[:cut]], [doc[cut:].lstrip("\n")]
    held = [d for i, d in enumerate(documents) if i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1]
    if not held:
        held = [documents[-1]]
        train = documents[:-1]
    else:
        train = [d for i, d in enumerate(documents) if i % HOLD_OUT_EVERY != HOLD_OUT_EVERY - 1]
    return train, held


def render(doc: Document, tokenizer=None) -> str:
    """A document as the text a model reads: a prompt and its completion joined, chat messages
    through the tokenizer's chat template."""
    if isinstance(doc, str):
        return doc
    if is_pair(doc):
        return doc["prompt"] + doc["completion"]
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise DatasetFormatError(
            "This dataset holds chat conversations ('messages'), and the model's tokenizer has no "
            "chat template to render them. Pick a chat model (an instruct model) or a plain-text dataset."
        )
    return tokenizer.apply_chat_template(doc, tokenize=False)
