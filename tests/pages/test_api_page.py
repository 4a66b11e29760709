"""API page through streamlit.testing: keys (created once, listed, revoked), snippets, and the
server started from the page in a process of its own, tried, and stopped."""
from __future__ import annotations

import pytest


@pytest.fixture
def no_server_left(isolated_home):
    yield
    from workbench.serve.server import stop_background

    stop_background(isolated_home)


def test_keys_are_created_once_listed_and_revoked(open_page, isolated_home):
    from workbench.serve.keys import KeyStore

    at = open_page("pages/api.py")
    assert any("not running" in i.value for i in at.info)
    at.text_input(key="api_key_name").set_value("page").run()
    at.button(key="api_key_create").click().run()
    assert not at.exception
    name, key = at.session_state["api_new_key"]
    assert name == "page" and KeyStore(isolated_home).check(key) == "page"
    assert any(c.value == key for c in at.code)
    assert key not in (isolated_home / "serve" / "keys.json").read_text()
    assert any(f'api_key = "{key}"' in c.value for c in at.code)  # the requests snippet uses it
    at.button(key="api_key_create").click().run()  # same name again: explained, page keeps running
    assert any("exists" in e.value for e in at.error)
    at.button(key="api_revoke").click().run()
    assert not at.exception
    assert KeyStore(isolated_home).check(key) is None


def test_the_server_starts_from_the_page_answers_and_stops(open_page, isolated_home, no_server_left):
    from workbench.serve.server import read_state

    at = open_page("pages/api.py")
    at.multiselect(key="api_models").set_value(["tiny-gpt2"]).run()
    at.text_input(key="api_key_name").set_value("page").run()
    at.button(key="api_key_create").click().run()
    at.button(key="api_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    state = read_state(isolated_home)
    assert state and state.host == "127.0.0.1" and state.models == ["tiny-gpt2"]
    assert any("Serving on" in s.value for s in at.success)
    at.text_area(key="api_try_text").set_value("Once upon a time").run()
    at.button(key="api_try_go").click().run()
    assert not at.exception
    answer = at.session_state["api_answer"]
    assert answer["generated_text"] and answer["model"] == "tiny-gpt2"
    at.button(key="api_stop").click().run()
    assert read_state(isolated_home) is None
    assert any("not running" in i.value for i in at.info)


def test_the_server_starts_on_an_onnxruntime_backend_picked_on_the_page(open_page, tiny_store, no_server_left):
    from workbench.serve.server import START_TIMEOUT_S, read_state, start_seconds
    from workbench.testing.exports import seed_export

    at = open_page("pages/api.py")
    at.multiselect(key="api_models").set_value(["tiny-llama"]).run()
    options = at.selectbox(key="api_backend").options
    assert options[0] == "torch" and "onnxruntime-fused" in options and "llamacpp" not in options
    assert start_seconds(tiny_store, ["tiny-llama"], "onnxruntime-fused") > START_TIMEOUT_S  # export ahead
    seed_export(tiny_store, "tiny-llama", "fused")
    assert start_seconds(tiny_store, ["tiny-llama"], "onnxruntime-fused") == START_TIMEOUT_S
    at.selectbox(key="api_backend").set_value("onnxruntime-fused").run()
    at.button(key="api_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    at.text_input(key="api_key_name").set_value("page").run()  # a key made while it serves: "try it" uses it
    at.button(key="api_key_create").click().run()
    state = read_state(tiny_store.home)
    assert state and state.backend == "onnxruntime-fused" and state.models == ["tiny-llama"]
    assert any("onnxruntime-fused" in s.value for s in at.success)
    at.text_area(key="api_try_text").set_value("Once upon a time").run()
    at.button(key="api_try_go").click().run()
    assert not at.exception
    assert at.session_state["api_answer"]["generated_text"]
