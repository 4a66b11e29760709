"""Retrieval that a small model can read: sentence-sized passages that keep their heading path and
exact spans, the one fact asked for ranked first, indexes of an older schema rebuilt, the user
turn's framings, and test sets whose accepted answers cannot be met by echoing the question."""
import importlib.util
import sqlite3
import tomllib
from pathlib import Path

import pytest

from workbench.apps import knowledge
from workbench.apps.card import parse_app_card
from workbench.apps.catalog import INDEX, app_dir, builtin_apps_dir, reindex_if_changed, save_app
from workbench.apps.index import KnowledgeIndexError, build_index, indexed_sources, query_terms, search
from workbench.apps.knowledge import split_passages
from workbench.apps.prompt import USER_FRAMES, Citation, build_messages

ROOT = Path(__file__).resolve().parents[3]
HOURS = """# Club

## Boathouse hours

The boathouse opens at 5:45 in the morning from April to October. In winter it opens at 7:15. It is closed every Tuesday.

## Boats

The club owns eleven boats. The oldest is a coxed four named Gannet. The newest eight is called Silver Osprey.

- Lockers cost 15 crowns. Keys are at the desk.
- Kit is dark green.

```
code. Stays. Whole.
```
"""


def test_sentence_passages_quote_the_text_and_keep_the_heading_apart():
    passages = split_passages("h.md", HOURS, target_chars=1)
    texts = [p.text for p in passages]
    assert texts[:4] == ["# Club", "The boathouse opens at 5:45 in the morning from April to October.",
                         "In winter it opens at 7:15.", "It is closed every Tuesday."]
    assert "- Lockers cost 15 crowns." in texts and "Keys are at the desk." in texts and "- Kit is dark green." in texts
    assert "```\ncode. Stays. Whole.\n```" in texts  # a code block is never cut into sentences
    assert {p.heading for p in passages[1:4]} == {"Club > Boathouse hours"}
    for p in passages:
        assert p.text == HOURS[p.start:p.end] and p.text == p.text.strip()
        assert not p.text.startswith("## ")  # the heading travels in .heading, not in the text


def test_packing_grows_a_passage_up_to_the_target_only():
    passages = split_passages("h.md", HOURS, target_chars=120)
    assert all(len(p.text) <= 120 for p in passages)
    hours = [p.text for p in passages if p.heading.endswith("hours")]
    assert hours == ["The boathouse opens at 5:45 in the morning from April to October. In winter it opens at 7:15.",
                     "It is closed every Tuesday."]
    sections = split_passages("h.md", HOURS, target_chars=0)  # whole sections, heading line included
    assert [p.text.splitlines()[0] for p in sections] == ["# Club", "## Boathouse hours", "## Boats"]


def test_the_sentence_with_the_asked_fact_ranks_first(tmp_path):
    index = build_index(tmp_path / "i.sqlite", split_passages("h.md", HOURS, target_chars=1), {"h.md": "0"})
    (best, _), = search(index, "What time does the boathouse open in winter?", k=1)
    assert best.text == "In winter it opens at 7:15."
    (best, _), = search(index, "What is the name of the oldest boat?", k=1)
    assert "Gannet" in best.text and "Osprey" not in best.text
    sections = build_index(tmp_path / "s.sqlite", split_passages("h.md", HOURS, target_chars=0), {"h.md": "0"})
    (whole, _), = search(sections, "What time does the boathouse open in winter?", k=1)
    assert "5:45" in whole.text  # a section hands the model the neighbouring fact too


def test_the_shipped_default_is_sentence_sized():
    assert knowledge.PASSAGE_TARGET_CHARS > 0
    text = (builtin_apps_dir() / "harbour-handbook" / "knowledge" / "handbook.md").read_text(encoding="utf-8")
    assert all("5:45" not in p.text for p in split_passages("h.md", text) if "7:15" in p.text)


def test_stop_words_can_be_kept_for_the_query():
    assert query_terms("What is the name of the oldest boat?") == ["name", "oldest", "boat"]
    assert query_terms("What is the name of the oldest boat?", stop_words=False) == ["what", "the", "name", "oldest", "boat"]


def test_an_index_of_an_older_schema_is_refused_and_rebuilt(tiny_store, tmp_path):
    doc = tmp_path / "club.md"
    doc.write_text(HOURS)
    save_app(tiny_store, parse_app_card({"id": "club", "base_model": "tiny-llama"}), [doc])
    path = app_dir(tiny_store, "club") / INDEX
    assert indexed_sources(path)
    con = sqlite3.connect(path)
    with con:
        con.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    con.close()
    with pytest.raises(KnowledgeIndexError, match="save the app again"):
        indexed_sources(path)
    from workbench.apps.catalog import get_card

    assert reindex_if_changed(tiny_store, "club", get_card(tiny_store, "club"))  # it says it re-indexed
    assert indexed_sources(path) and reindex_if_changed(tiny_store, "club", get_card(tiny_store, "club")) == []


def test_user_frames_put_the_passage_before_the_question():
    card = parse_app_card({"id": "a", "base_model": "m", "instructions": "Be brief.", "knowledge": {"placement": "user"}})
    cite = [Citation("h.md", "Club > Boats", 0, 5, 1.0, "The oldest is Gannet.")]
    plain = build_messages(card, "Oldest boat?", [], cite, [])[-1]["content"]
    brief = build_messages(card, "Oldest boat?", [], cite, [], user_frame="brief")[-1]["content"]
    assert plain == "Knowledge:\n## Boats\nThe oldest is Gannet.\n\nQuestion: Oldest boat?"
    assert brief == plain + "\nAnswer in a few words." and set(USER_FRAMES) >= {"plain", "brief"}


def _question_sets():
    for toml in sorted((ROOT / "apps").glob("*/app.toml")):
        for t in tomllib.loads(toml.read_text(encoding="utf-8")).get("tests", []):
            yield toml.parent.name, t["question"], t["answers"]
    spec = importlib.util.spec_from_file_location("apps_qa", ROOT / "benchmarks" / "apps_qa.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for question, answers, part in bench.QUESTIONS:
        yield f"apps_qa {part}", question, answers


def test_no_accepted_answer_can_be_met_by_echoing_the_question():
    sets = list(_question_sets())
    assert len([s for s in sets if s[0] == "apps_qa held-out"]) >= 8
    for where, question, answers in sets:
        for a in answers:
            assert a.lower() not in question.lower(), f"{where}: {a!r} is in its own question {question!r}"
