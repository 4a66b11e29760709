"""Apps page through streamlit.testing: the store front (base missing, own tests fresh/stale),
a chat with citations and the exact prompt, its hand-off to Attention and Inside, the
create/edit form, duplicate, export, remove, and bad input shown as errors while the page runs."""
import re

import pytest

from workbench.apps.card import parse_app_card
from workbench.apps.catalog import app_dir, get_card, save_app
from workbench.apps.knowledge import knowledge_text

HANDBOOK = "# Club\n\n## Hours\nThe boathouse opens at 5:45.\n\n## Fees\nStudents pay 90 crowns.\n"


@pytest.fixture
def club(tiny_store, tmp_path, long_chat_dir):
    tiny_store.add("tiny-long-chat", local_dir=long_chat_dir)
    path = tmp_path / "handbook.md"
    path.write_text(HANDBOOK)
    card = parse_app_card({"id": "club", "name": "Club helper", "base_model": "tiny-long-chat",
                           "description": "Answers from the handbook.", "starters": ["When does the boathouse open?"],
                           "instructions": "Be brief.", "generation": {"max_new_tokens": 3},
                           "tests": [{"question": "When does the boathouse open?", "answers": ["5:45"]}]})
    save_app(tiny_store, card, [path])
    return tiny_store


def shown(markdown: str) -> str:
    """What a reader sees of Markdown the page escaped (``views.md``): the text as typed."""
    return re.sub(r"\\(.)", r"\1", markdown)


def test_store_front_lists_apps_and_says_what_a_missing_base_needs(open_page, club):
    at = open_page("pages/apps.py")
    names = [m.value for m in at.markdown]
    assert "#### Club helper" in names and "#### Larkspur Bay club helper" in names  # a built-in one
    assert any("When does the boathouse open?" in m for m in names)
    needs = [w.value for w in at.warning if "needs model smollm2-135m-instruct" in w.value]
    assert len(needs) == 3 and "workbench store install" in needs[0]
    assert at.button(key="apps_install_harbour-handbook").label == "Install smollm2-135m-instruct"
    assert at.button(key="apps_chat_harbour-handbook").disabled and not at.button(key="apps_chat_club").disabled
    assert any("never run here" in c.value for c in at.caption)


def test_own_tests_run_from_the_front_and_go_stale_when_the_app_changes(open_page, club, tmp_path):
    at = open_page("pages/apps.py")
    at.button(key="apps_test_club").click().run()
    assert not at.exception
    fresh = [s.value for s in at.success if "of its own tests, measured here" in s.value]
    assert fresh and fresh[0].startswith(("0/1", "1/1")), [s.value for s in at.success]
    other = tmp_path / "other.md"
    other.write_text("# Other\n\n## Hours\nClosed on Mondays.\n")
    save_app(club, get_card(club, "club").with_changes(name="Club helper 2"), [other], replace=True)
    at.run()
    stale = [shown(w.value) for w in at.warning if "of its own tests, measured here" in w.value]
    assert stale and "stale: the app (card or knowledge) changed since" in stale[0]


def test_chat_answers_with_citations_and_the_exact_prompt(open_page, club):
    at = open_page("pages/apps.py")
    at.button(key="apps_chat_club").click().run()
    assert at.session_state["apps_view"] == "Chat" and at.selectbox(key="apps_open").value == "club"
    at.button(key="apps_chat_starter_0").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    answer = at.session_state["apps_chats"]["club"][-1]["answer"]
    (c,) = answer.citations
    assert c.heading == "Club > Hours" and c.text == knowledge_text(app_dir(club, "club") / "knowledge" / c.file)[c.start:c.end]
    assert "5:45" in c.text and c.text in answer.prompt
    labels = [shown(e.label) for e in at.expander]
    assert f"[1] handbook.md › Club > Hours · characters {c.start}–{c.end} · score {c.score:.2f}" in labels
    assert any(code.value.strip() == answer.prompt.strip() for code in at.code)  # the exact prompt, shown as text
    at.chat_input(key="apps_chat_input").set_value("How much do students pay?").run()
    history = at.session_state["apps_chats"]["club"]
    assert [t["role"] for t in history] == ["user", "assistant"] * 2
    assert "90 crowns" in history[-1]["answer"].citations[0].text


def test_an_answer_opens_in_attention_and_inside_with_the_prompt_sent(open_page, club):
    at = open_page("pages/apps.py")
    at.button(key="apps_chat_club").click().run()
    at.button(key="apps_chat_starter_0").click().run()
    answer = at.session_state["apps_chats"]["club"][-1]["answer"]
    at.button(key="apps_att_1").click().run()
    assert not at.exception
    assert at.segmented_control(key="att_source").value == "App answer"
    assert at.text_area(key="att_app_text").value == answer.prompt + answer.text
    at.switch_page("pages/attention.py")  # AppTest reruns the page it was told, not the one switched to
    at.button(key="att_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    result = at.session_state["wb_attention"]
    assert result.model == "tiny-long-chat"
    from workbench.runtime import load_model

    tok = load_model("tiny-long-chat", store=club).tokenizer
    sent = tok(answer.prompt, add_special_tokens=False)["input_ids"]
    assert len(sent) == answer.prompt_tokens and result.token_ids[:len(sent)] == sent  # the prompt sent, exactly
    at.switch_page("pages/apps.py").run()
    at.button(key="apps_ins_1").click().run()
    assert not at.exception
    assert at.text_area(key="ins_text").value == answer.prompt
    assert any("The exact prompt app club sent" in c.value for c in at.caption)


def test_create_edit_duplicate_export_remove(open_page, club):
    at = open_page("pages/apps.py")
    at.button(key="apps_new").click().run()
    assert at.session_state["apps_view"] == "Create / edit"
    at.text_input(key="apps_f_id").set_value("notes")
    at.text_input(key="apps_f_name").set_value("Notes <b>bold</b>")
    at.selectbox(key="apps_f_base_model").set_value("tiny-llama")
    at.text_area(key="apps_f_instructions").set_value("<script>alert('x')</script> Be kind.")
    at.text_area(key="apps_f_starters").set_value("Hi?\n\nWhat now?")
    at.number_input(key="apps_f_max_new_tokens").set_value(2).run()
    at.button(key="apps_f_save").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    card = get_card(club, "notes")
    assert card.starters == ("Hi?", "What now?") and card.instructions.startswith("<script>")
    assert any("Saved notes" in s.value for s in at.success)
    # the saved app's test chat is under the form; its instructions are shown as text, not run
    assert any(t.value == card.instructions for t in at.text)
    at.button(key="apps_try_starter_0").click().run()
    assert at.session_state["apps_chats"]["notes"][-1]["answer"].app == "notes"
    # edit: the form opens with the card; a second edit made meanwhile is refused, not overwritten
    at.segmented_control[0].set_value("Store front").run()
    at.button(key="apps_edit_club").click().run()
    assert at.text_input(key="apps_f_name").value == "Club helper"
    assert at.multiselect(key="apps_f_keep").value == ["handbook.md"]
    save_app(club, get_card(club, "club").with_changes(description="changed elsewhere"),
             [app_dir(club, "club") / "knowledge" / "handbook.md"], replace=True)
    at.text_input(key="apps_f_name").set_value("Club, edited").run()
    at.button(key="apps_f_save").click().run()
    assert any("changed by someone else" in e.value for e in at.error)
    assert get_card(club, "club").name == "Club helper"
    at.segmented_control[0].set_value("Store front").run()
    at.button(key="apps_dup_club").click().run()
    assert get_card(club, "club-copy").knowledge_names == ("handbook.md",)
    at.button(key="apps_exp_club").click().run()
    downloads = at.get("download_button")
    assert len(downloads) == 2 and any("knowledge" in c.value for c in at.caption)
    at.button(key="apps_rm_club-copy").click().run()
    assert not (app_dir(club, "club-copy") / "manifest.json").exists()
    assert any("Removed club-copy" in s.value for s in at.success)


@pytest.mark.parametrize("field,value,message", [
    ("id", "Bad Id!", "is not valid"),
    ("id", "tiny-gpt2", "already a model's id"),
    ("id", "", "is not valid"),
])
def test_bad_form_input_is_shown_and_nothing_is_saved(open_page, club, field, value, message):
    at = open_page("pages/apps.py")
    at.button(key="apps_new").click().run()
    at.text_input(key="apps_f_id").set_value(value)
    at.selectbox(key="apps_f_base_model").set_value("tiny-llama").run()
    at.button(key="apps_f_save").click().run()
    assert not at.exception
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert sorted(p.name for p in (club.home / "apps").iterdir()) == ["club"]


def test_a_question_longer_than_the_context_is_cut_and_said_so(open_page, club):
    at = open_page("pages/apps.py")
    at.button(key="apps_chat_club").click().run()
    at.chat_input(key="apps_chat_input").set_value("boathouse opens " * 3000).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("The question was cut" in c.value for c in at.caption)


def test_make_an_app_from_a_model_opens_the_form_filled_in(open_page, club):
    at = open_page("pages/apps.py")
    at.session_state["wb_app_draft"] = {"id": "tiny-notes-app", "name": "tiny-notes app", "base_model": "tiny-llama"}
    at.run()
    assert at.session_state["apps_view"] == "Create / edit"
    assert at.text_input(key="apps_f_id").value == "tiny-notes-app"
    assert at.selectbox(key="apps_f_base_model").value == "tiny-llama"
    assert not at.warning or all("needs model" in w.value for w in at.warning)
