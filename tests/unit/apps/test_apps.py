"""Apps on tiny models: cards, saving through the install primitive, retrieval into the prompt
within the context, citations that quote their file, app tests and their staleness."""
import json

import pytest
import tomllib

from workbench.apps.card import parse_app_card, parse_app_toml
from workbench.apps.catalog import (
    app_dir,
    duplicate_app,
    get_card,
    list_apps,
    remove_app,
    save_app,
)
from workbench.apps.evaluation import run_tests
from workbench.apps.evaluation import test_status as status_of
from workbench.errors import CardError, InvalidInputError, ModelNotInstalledError

HANDBOOK = "# Club\n\n## Hours\nOpens at 5:45.\n\n## Fees\nStudents pay 90 crowns.\n"


@pytest.fixture
def store(tiny_store, long_chat_dir):
    tiny_store.add("tiny-long-chat", local_dir=long_chat_dir)
    return tiny_store


@pytest.fixture
def handbook(tmp_path):
    path = tmp_path / "hand book.md"
    path.write_text(HANDBOOK)
    return path


def make(store, handbook, app_id="club", **extra):
    data = {"id": app_id, "base_model": "tiny-long-chat", "instructions": "Be brief.",
            "generation": {"max_new_tokens": 4}, "knowledge": {"passages": 1}, **extra}
    save_app(store, parse_app_card(data), [handbook])
    return store.app(app_id)


def test_card_round_trips_and_bad_fields_name_the_fix():
    card = parse_app_card({"id": "a", "base_model": "m", "instructions": 'Say "hi"\n<script>x</script>',
                           "starters": ["q?"], "examples": [{"user": "u", "assistant": "a"}],
                           "generation": {"temperature": 0.5, "stop": ["\n\n"]},
                           "knowledge": {"files": ["knowledge/x.md"], "passages": 2, "placement": "user"},
                           "tests": [{"question": "q", "answers": ["a"]}]})
    assert parse_app_toml(card.to_toml()) == card
    bad = [({"id": "Bad Id", "base_model": "m"}, "not valid"),
           ({"id": "ok\n", "base_model": "m"}, "not valid"),
           ({"id": "a"}, "base_model"),
           ({"id": "a", "base_model": "m", "generation": {"temperature": 9}}, "temperature"),
           ({"id": "a", "base_model": "m", "knowledge": {"placement": "middle"}}, "placement"),
           ({"id": "a", "base_model": "m", "knowledge": {"files": ["../x.md"]}}, "knowledge/<name>"),
           ({"id": "a", "base_model": "m", "tests": [{"question": "q", "answers": []}]}, "accepted answer"),
           ({"id": "a", "base_model": "m", "colour": "red"}, "unknown keys")]
    for data, words in bad:
        with pytest.raises(CardError, match=words):
            parse_app_card(data)


def test_save_installs_whole_with_manifest_and_index(store, handbook):
    tiny_store = store
    app = make(tiny_store, handbook)
    folder = app_dir(tiny_store, "club")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "app" and set(manifest["files"]) == {"app.toml", "knowledge/hand_book.md"}
    assert (folder / "index.sqlite").is_file()  # built here, never listed: it does not travel with the app
    assert tomllib.loads((folder / "app.toml").read_text())["knowledge"]["files"] == ["knowledge/hand_book.md"]
    assert not list(tiny_store.staging_dir.iterdir())
    assert app.card.knowledge_names == ("hand_book.md",)


def test_save_refusals_leave_nothing(store, handbook, tmp_path):
    tiny_store = store
    with pytest.raises(CardError, match="model's id"):
        save_app(tiny_store, parse_app_card({"id": "tiny-gpt2", "base_model": "tiny-llama"}), [])
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(Exception, match="no text"):
        save_app(tiny_store, parse_app_card({"id": "e", "base_model": "tiny-llama"}), [handbook, empty])
    assert not app_dir(tiny_store, "e").exists()
    make(tiny_store, handbook)
    with pytest.raises(CardError, match="already in the store"):
        make(tiny_store, handbook)
    with pytest.raises(CardError, match="changed by someone else"):
        save_app(tiny_store, get_card(tiny_store, "club"), [handbook], replace=True, expected_digest="0" * 64)


def test_chat_cites_the_passage_it_put_in_the_prompt(store, handbook):
    tiny_store = store
    app = make(tiny_store, handbook)
    answer = app.chat("How much do students pay?")
    (c,) = answer.citations
    assert c.heading == "Club > Fees" and c.file == "hand_book.md" and c.score > 0
    assert app.knowledge_text(c.file)[c.start:c.end] == c.text
    assert c.text in answer.prompt and "Be brief." in answer.prompt and answer.prompt.startswith("<|im_start|>system")
    assert set(answer.to_json()["citations"][0]) == {"file", "heading", "start", "end", "score", "text"}
    pieces = list(stream := app.stream("How much do students pay?"))
    assert "".join(pieces).strip() == stream.last.text == answer.text  # greedy: the same answer


def test_user_placement_and_overrides(store, handbook):
    tiny_store = store
    app = make(tiny_store, handbook, knowledge={"placement": "user"})
    prepared = app.prepare("When does it open?", max_new_tokens=2, temperature=0.3)
    assert prepared.messages[-1]["content"].startswith("Knowledge:\n## Hours")
    assert prepared.settings["max_new_tokens"] == 2 and prepared.settings["temperature"] == 0.3
    with pytest.raises(InvalidInputError, match="Unknown app settings"):
        app.prepare("x", colour=1)


def test_prompt_stays_within_the_context_budget(tiny_store, handbook):
    save_app(tiny_store, parse_app_card({"id": "small", "base_model": "tiny-llama"}), [handbook])
    app = tiny_store.app("small")
    limit = app.model.context_length
    prepared = app.prepare("Fees? " + "students pay how much " * 60, max_new_tokens=20)
    assert prepared.prompt_tokens <= limit - 20
    assert any("cut" in n or "left out" in n for n in prepared.notes)
    answer = app.chat("Fees? " + "students pay how much " * 60, max_new_tokens=20)  # generates, no error
    assert answer.prompt_tokens <= limit - 20


def test_changed_knowledge_is_reindexed_and_said(store, handbook):
    tiny_store = store
    app = make(tiny_store, handbook)
    (app.folder / "knowledge" / "hand_book.md").write_text("# Club\n\n## Boats\nThe oldest boat is Gannet.\n")
    answer = app.chat("Which boat is the oldest?")
    assert answer.citations[0].heading == "Club > Boats"
    assert any("re-indexed" in n for n in answer.notes)
    assert not app.chat("Which boat is the oldest?").notes  # once


def test_plain_model_gets_a_transcript(tiny_store, handbook):
    save_app(tiny_store, parse_app_card({"id": "plain", "base_model": "tiny-gpt2", "generation": {"max_new_tokens": 3}}),
             [handbook])
    prepared = tiny_store.app("plain").prepare("How much do students pay?")
    assert prepared.prompt.endswith("User: How much do students pay?\n\nAssistant:")
    assert "\nUser:" in prepared.settings["stop"]


def test_listing_builtins_missing_base_duplicate_remove(store, handbook):
    tiny_store = store
    ids = {e.card.id: e for e in list_apps(tiny_store)}
    assert {"harbour-handbook", "shakespeare-companion", "workbench-guide"} <= set(ids)
    assert "needs model smollm2-135m-instruct" in ids["harbour-handbook"].problem
    with pytest.raises(ModelNotInstalledError, match="workbench store install smollm2-135m-instruct"):
        tiny_store.app("harbour-handbook").chat("hi")
    make(tiny_store, handbook)
    duplicate_app(tiny_store, "club", "club-2")
    assert get_card(tiny_store, "club-2").name.endswith("(copy)")
    assert remove_app(tiny_store, "club") and not app_dir(tiny_store, "club").exists()
    assert not remove_app(tiny_store, "club")
    bad = app_dir(tiny_store, "club-2") / "app.toml"
    bad.write_text("id = ")
    problems = []
    assert "club-2" not in {e.card.id for e in list_apps(tiny_store, problems)} and problems


def test_app_tests_are_recorded_and_go_stale(store, handbook):
    tiny_store = store
    make(tiny_store, handbook, tests=[{"question": "How much do students pay?", "answers": ["90"]}])
    assert status_of(tiny_store, "club").state == "none"
    result = run_tests(tiny_store, "club")
    assert result["total"] == 1 and result["base_digest"] == tiny_store.fingerprint("tiny-long-chat")
    assert status_of(tiny_store, "club").state == "fresh"
    card = get_card(tiny_store, "club")
    save_app(tiny_store, card.with_changes(instructions="Other."), [handbook], replace=True)
    status = status_of(tiny_store, "club")
    assert status.state == "stale" and "changed" in status.reason


def test_a_builtin_app_follows_its_shipped_version_unless_edited_here(tiny_store, tmp_path, monkeypatch):
    import shutil

    from workbench.apps import catalog

    shipped = tmp_path / "builtin"
    shutil.copytree(catalog.builtin_apps_dir() / "harbour-handbook", shipped / "harbour-handbook")
    monkeypatch.setattr(catalog, "builtin_apps_dir", lambda: shipped)
    folder = catalog.ensure_installed(tiny_store, "harbour-handbook")
    kb = next((shipped / "harbour-handbook" / "knowledge").iterdir())
    kb.write_text(kb.read_text() + "\n## New section\nThe café opens at noon.\n")  # a newer workbench ships more
    catalog.ensure_installed(tiny_store, "harbour-handbook")
    assert "The café opens at noon." in (folder / "knowledge" / kb.name).read_text()
    card = catalog.get_card(tiny_store, "harbour-handbook").with_changes(name="Our own helper")
    catalog.save_app(tiny_store, card, [folder / "knowledge" / kb.name], replace=True)  # edited here
    kb.write_text(kb.read_text() + "\nAnother shipped change.\n")
    catalog.ensure_installed(tiny_store, "harbour-handbook")
    assert catalog.get_card(tiny_store, "harbour-handbook").name == "Our own helper"  # the edit stays
