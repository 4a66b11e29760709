"""Generate page through streamlit.testing (no browser, no JavaScript)."""


def test_prompt_mode_streams_and_keeps_the_result(open_page):
    at = open_page("pages/generate.py")
    at.selectbox(key="wb_model").set_value("tiny-gpt2").run()
    at.text_area(key="gen_prompt").set_value("Once upon a time").run()
    at.number_input(key="gen_max_new").set_value(6).run()
    at.button(key="gen_go").click().run()
    assert not at.exception
    result = at.session_state["wb_last_generation"]
    assert result.model == "tiny-gpt2" and len(result.token_ids) <= 6
    assert any(m.label == "Time to first token" for m in at.metric)


def test_empty_prompt_shows_how_to_fix_it(open_page):
    at = open_page("pages/generate.py")
    at.text_area(key="gen_prompt").set_value("  ").run()
    at.button(key="gen_go").click().run()
    assert not at.exception
    assert any("prompt is empty" in e.value for e in at.error)


def test_sampling_with_temperature_zero_is_refused_with_a_message(open_page):
    at = open_page("pages/generate.py")
    at.toggle(key="gen_sample").set_value(True).run()
    at.slider(key="gen_temperature").set_value(0.0).run()
    at.button(key="gen_go").click().run()
    assert any("Temperature 0" in e.value for e in at.error)


def test_chat_mode_keeps_history(open_page):
    at = open_page("pages/generate.py")
    at.selectbox(key="wb_model").set_value("tiny-llama").run()
    at.segmented_control(key="gen_mode").set_value("Chat").run()
    at.chat_input(key="gen_chat_input").set_value("Hello").run()
    assert not at.exception
    history = at.session_state["wb_chat"]
    assert [m["role"] for m in history] == ["user", "assistant"]


def test_chat_mode_on_a_base_model_explains(open_page):
    at = open_page("pages/generate.py")
    at.selectbox(key="wb_model").set_value("tiny-gpt2").run()
    at.segmented_control(key="gen_mode").set_value("Chat").run()
    assert any("base model" in w.value for w in at.warning)


def test_side_by_side_runs_both_models(open_page):
    at = open_page("pages/generate.py")
    at.selectbox(key="wb_model").set_value("tiny-gpt2").run()
    at.segmented_control(key="gen_mode").set_value("Side by side").run()
    at.selectbox(key="gen_other").set_value("tiny-gemma3").run()
    at.button(key="gen_sbs_go").click().run()
    assert not at.exception
    assert len([m for m in at.metric if m.label == "Tokens / s"]) == 2
