"""Knowledge files: passages keep their headings and their spans quote the file; bad files are
refused with the fix; the FTS5 index ranks the right passage first."""
import pytest

from workbench.apps.index import build_index, query_terms, search
from workbench.apps.knowledge import (
    MAX_FILE_BYTES,
    KnowledgeError,
    knowledge_text,
    split_passages,
)

DOC = """Intro line before any heading.

# Club

## Hours
The boathouse opens at 5:45 in summer.

## Fees
Students pay 90 crowns.

### Lockers
A locker costs 15 crowns a month.
"""


def test_passages_quote_the_text_and_keep_heading_paths(tmp_path):
    path = tmp_path / "h.md"
    path.write_text(DOC)
    text = knowledge_text(path)
    passages = split_passages("h.md", text)
    assert [p.heading for p in passages] == ["", "Club", "Club > Hours", "Club > Fees", "Club > Fees > Lockers"]
    for p in passages:
        assert p.text == text[p.start:p.end] and p.text == p.text.strip()


def test_long_sections_are_cut_at_paragraphs_within_the_limit(tmp_path):
    text = "# Long\n\n" + "\n\n".join(f"Paragraph {i} " + "word " * 40 for i in range(10))
    passages = split_passages("l.md", text, max_chars=300)
    assert len(passages) > 3
    assert all(len(p.text) <= 300 and p.text == text[p.start:p.end] for p in passages)
    assert all(p.heading == "Long" for p in passages)
    one_line = "x" * 1000
    assert all(len(p.text) <= 300 for p in split_passages("x.txt", one_line, max_chars=300))


def test_html_drops_scripts_and_keeps_headings(tmp_path):
    path = tmp_path / "p.html"
    path.write_text("<html><head><title>t</title><script>alert('x')</script></head><body><h2>Hours</h2>"
                    "<p>Opens at <b>5:45</b>.</p><script>steal()</script></body></html>")
    text = knowledge_text(path)
    assert "alert" not in text and "steal" not in text and "## Hours" in text and "Opens at 5:45." in text
    assert split_passages("p.html", text)[0].heading == "Hours"


def test_jsonl_records_become_sections(tmp_path):
    path = tmp_path / "faq.jsonl"
    path.write_text('{"title": "Hours", "text": "Opens at 5:45."}\n\n{"question": "Fee?", "answer": "90"}\n')
    text = knowledge_text(path)
    passages = split_passages("faq.jsonl", text)
    assert passages[0].heading == "Hours" and "Opens at 5:45." in passages[0].text
    assert "90" in text


@pytest.mark.parametrize("name, data, words", [
    ("empty.md", b"  \n", "no text"),
    ("bin.txt", b"abc\x00def", "binary"),
    ("latin.txt", "caf\xe9".encode("latin-1"), "UTF-8"),
    ("doc.pdf", b"%PDF-1.4", "no format"),
    ("bad.jsonl", b"{not json}\n", "not JSON"),
])
def test_bad_files_are_refused_with_the_fix(tmp_path, name, data, words):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(KnowledgeError, match=words):
        knowledge_text(path)


def test_missing_unreadable_and_oversized_files(tmp_path):
    with pytest.raises(KnowledgeError, match="does not exist"):
        knowledge_text(tmp_path / "nope.md")
    big = tmp_path / "big.txt"
    with open(big, "wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)  # sparse: no 20 MB written
    with pytest.raises(KnowledgeError, match="at most 20 MB"):
        knowledge_text(big)
    locked = tmp_path / "locked.md"
    locked.write_text("x")
    locked.chmod(0)
    try:
        if not locked.stat().st_mode & 0o444 and __import__("os").geteuid() != 0:
            with pytest.raises(KnowledgeError, match="permissions"):
                knowledge_text(locked)
    finally:
        locked.chmod(0o644)


def test_query_terms_drop_stop_words():
    assert query_terms("When does the boathouse OPEN in summer?") == ["boathouse", "open", "summer"]
    assert query_terms("what is it?") == []


def test_bm25_ranks_the_passage_with_the_answer_first(tmp_path):
    passages = split_passages("h.md", DOC)
    index = build_index(tmp_path / "i.sqlite", passages, {"h.md": "0" * 64})
    (best, score), *rest = search(index, "How much do students pay?", k=3)
    assert best.heading == "Club > Fees" and score > 0
    assert all(score >= s for _, s in rest)
    top, _ = search(index, "When is the boathouse opening?", k=1)[0]  # porter: opening ~ opens
    assert top.heading == "Club > Hours" and top.text == DOC[top.start:top.end]
    assert search(index, "the of and", k=2) == []
