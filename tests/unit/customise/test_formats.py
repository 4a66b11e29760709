"""Dataset formats, the held-out split, and bad input: each error says how to fix it."""
import json

import pytest

from workbench.data.formats import ALPACA_PROMPT, hold_out, read_documents, render
from workbench.errors import DatasetFormatError
from workbench.testing import tiny_models

TEXT = "\n".join(tiny_models.CORPUS[:12])


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_plain_text_is_one_document_split_at_a_line(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text(TEXT)
    fmt, docs = read_documents(f)
    assert fmt == "text" and docs == [TEXT]
    train, held = hold_out(docs)
    assert train[0] + "\n" + held[0] == TEXT  # cut at a line, nothing lost or repeated
    assert 0.05 < len(held[0]) / len(TEXT) < 0.5


def test_jsonl_text_alpaca_and_chat(tmp_path):
    fmt, docs = read_documents(write_jsonl(tmp_path / "a.jsonl", [{"text": f"line {i} " * 20} for i in range(20)]))
    assert fmt == "jsonl-text" and len(docs) == 20
    train, held = hold_out(docs)
    assert len(held) == 2 and not set(held) & set(train)  # whole records held out
    fmt, docs = read_documents(write_jsonl(tmp_path / "b.jsonl", [
        {"instruction": "Add", "input": "2 and 2", "output": "4"}, {"instruction": "Greet", "output": "Hello"}]))
    assert fmt == "alpaca"
    prompt = ALPACA_PROMPT.format(instruction="Add", input_block="### Input:\n2 and 2\n\n")
    assert docs[0] == {"prompt": prompt, "completion": "4"} and render(docs[0]) == prompt + "4"
    assert "### Input" not in docs[1]["prompt"]
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"}]
    fmt, docs = read_documents(write_jsonl(tmp_path / "c.jsonl", [{"messages": chat}] * 3))
    assert fmt == "chat" and docs[0] == chat
    tok = tiny_models.build_tokenizer(chat=True)
    assert render(docs[0], tok) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello there<|im_end|>\n"
    with pytest.raises(DatasetFormatError, match="no chat template"):
        render(docs[0], tiny_models.build_tokenizer(chat=False))


@pytest.mark.parametrize("name, content, message", [
    ("empty.txt", "", "holds no text"),
    ("tiny.txt", "Too short.", "only 10 characters"),
    ("data.csv", "a,b\n1,2", "not a dataset format"),
    ("bad.jsonl", '{"text": "ok"}\n{"text": broken\n', "line 2: not JSON"),
    ("odd.jsonl", '{"title": "x", "body": "y"}\n', "none of the known layouts"),
    ("mixed.jsonl", '{"text": "ok"}\n{"messages": "no"}\n', "line 2: 'text' must be a string"),
    ("list.jsonl", '[1, 2]\n', "a JSON object is needed"),
])
def test_bad_files_say_what_to_fix(tmp_path, name, content, message):
    f = tmp_path / name
    f.write_text(content)
    with pytest.raises(DatasetFormatError, match=message):
        hold_out(read_documents(f)[1], f.name)


def test_a_missing_file_names_the_path(tmp_path):
    with pytest.raises(DatasetFormatError, match="is not a file"):
        read_documents(tmp_path / "nope.txt")
