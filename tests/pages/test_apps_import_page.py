"""Apps page through streamlit.testing: importing a .gptapp opens the imported app's chat in the
run the Import button starts, and reruns the browser sent before it had seen that run (it still
showed the Import view with the upload, with or without the click) neither import the file again
nor leave the page without that chat. Going back to Import later shows an empty form."""
import pytest

from workbench.apps import export_app, remove_app
from workbench.apps.card import parse_app_card
from workbench.apps.catalog import save_app

HOURS = "# Club\n\n## Hours\nThe boathouse opens at 5:45.\n"


@pytest.fixture
def package(tiny_store, tmp_path) -> bytes:
    """The bytes of club.gptapp (an app on tiny-llama with one knowledge file), no longer installed."""
    knowledge = tmp_path / "hours.md"
    knowledge.write_text(HOURS)
    card = parse_app_card({"id": "club", "name": "Club helper", "base_model": "tiny-llama",
                           "starters": ["When does it open?"], "generation": {"max_new_tokens": 2}})
    save_app(tiny_store, card, [knowledge])
    path, _ = export_app(tiny_store, "club", tmp_path / "club.gptapp")
    remove_app(tiny_store, "club")
    return path.read_bytes()


def installed_apps(store) -> list[str]:
    return sorted(p.name for p in (store.home / "apps").iterdir() if (p / "manifest.json").is_file())


def resend(at, drawn, states):
    """Run the page on ``states`` as the browser sends them while it still shows the page ``drawn``
    (an element tree of an earlier run), the uploads of its uploaders included. The browser sends a
    button only when it was clicked (AppTest sends every button, unclicked ones as false). AppTest
    has no public call for a browser that has not yet seen the last run: hence ``_tree``, ``_run``."""
    from streamlit.proto.WidgetStates_pb2 import WidgetStates

    sent = WidgetStates()
    sent.widgets.extend(w for w in states.widgets if w.WhichOneof("value") != "trigger_value" or w.trigger_value)
    at._tree = drawn
    return at._run(sent)


def shows_chat_of(at, app_id: str) -> bool:
    return any(c.placeholder == "Ask Club helper" for c in at.chat_input) and (
        at.session_state["apps_view"] != "Chat" or at.selectbox(key="apps_open").value == app_id)


def test_import_opens_the_chat_and_stale_reruns_neither_import_again_nor_close_it(open_page, tiny_store, package):
    at = open_page("pages/apps.py")
    at.segmented_control[0].set_value("Import").run()
    empty_form = at._tree  # the Import view as the browser draws it; the upload goes into its uploader
    empty_form.file_uploader(key="apps_imp_file").set_value(("club.gptapp", package, "application/zip"))
    at.run()
    assert not at.button(key="apps_imp_go").disabled
    before_click = at._tree.get_widget_states()
    at.button(key="apps_imp_go").click()
    the_click = at._tree.get_widget_states()
    at.run()  # one run: the import and the chat
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(s.value == "Imported club: checked every file against its manifest." for s in at.success)
    assert at.session_state["apps_view"] == "Chat" and shows_chat_of(at, "club")
    assert installed_apps(tiny_store) == ["club"]

    # the click once more, sent before the browser saw the chat (a double click, a resend on reconnect)
    resend(at, empty_form, the_click)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.session_state["apps_view"] == "Chat" and shows_chat_of(at, "club")
    assert installed_apps(tiny_store) == ["club"]

    # a message the browser sent while it still showed the Import view with the upload, no click:
    # the view control it carries is the one drawn before the switch to Chat, so the chat stays
    resend(at, empty_form, before_click)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.session_state["apps_view"] == "Chat" and shows_chat_of(at, "club")
    at.chat_input(key="apps_chat_input").set_value("When does it open?").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    answer = at.session_state["apps_chats"]["club"][-1]["answer"]
    assert answer.app == "club" and "5:45" in answer.citations[0].text
    assert installed_apps(tiny_store) == ["club"]

    # the app removed meanwhile (another tab, the CLI): the same upload imports it again
    remove_app(tiny_store, "club")
    resend(at, empty_form, the_click)
    assert not at.error and installed_apps(tiny_store) == ["club"], [e.value for e in at.error]
    assert any(s.value.startswith("Imported club") for s in at.success) and shows_chat_of(at, "club")

    # back to Import on purpose, later: the form is empty and no chat is under it
    at.segmented_control[0].set_value("Chat").run()
    at.segmented_control[0].set_value("Import").run()
    assert at.file_uploader(key="apps_imp_file").value is None and not at.chat_input


def test_a_refused_import_is_shown_and_the_form_stays(open_page, tiny_store, package):
    at = open_page("pages/apps.py")
    at.segmented_control[0].set_value("Import").run()
    at.file_uploader(key="apps_imp_file").set_value(("club.gptapp", package, "application/zip"))
    at.text_input(key="apps_imp_as").set_value("tiny-gpt2").run()  # a model's id
    at.button(key="apps_imp_go").click().run()
    assert not at.exception
    assert any("already a model's" in e.value for e in at.error), [e.value for e in at.error]
    assert at.session_state["apps_view"] == "Import" and installed_apps(tiny_store) == []
    at.text_input(key="apps_imp_as").set_value("club-2").run()
    at.button(key="apps_imp_go").click().run()
    assert not at.error and installed_apps(tiny_store) == ["club-2"]
    assert at.session_state["apps_view"] == "Chat" and at.selectbox(key="apps_open").value == "club-2"
