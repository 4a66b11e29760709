"""Inside page through streamlit.testing: every tab draws from the tiny store; bad input shows a
message and the page keeps running."""
import json

import pytest

INJECTION = "</script><script>alert(1)</script>"


@pytest.fixture
def page(open_page):
    at = open_page("pages/inside.py")
    at.selectbox(key="wb_model").set_value("tiny-llama").run()
    return at


def open_tab(at, name):
    at.session_state["ins_tab"] = name
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def specs(at):
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_architecture_tab(page):
    at = open_tab(page, "Architecture")
    figures = specs(at)
    assert len(figures) == 2
    assert figures[1]["data"][0]["type"] == "treemap"
    assert any("num_parameters()" in c.value for c in at.caption)


def test_logit_lens_tab(page):
    at = open_tab(page, "Logit lens")
    at.text_input(key="ins_lens_target").set_value(" Paris").run()
    at.button(key="ins_lens_go").click().run()
    assert not at.exception and not at.error
    result = at.session_state["ins_lens"]
    assert result.num_layers == 2 and result.target_token == "␣Paris"
    kinds = [f["data"][0]["type"] for f in specs(at)]
    assert kinds == ["heatmap", "scatter"]
    assert any("top token from layer" in c.value for c in at.caption)


def test_attribution_tab_escapes_tokens(page):
    page.text_area(key="ins_text").set_value(f"Hi {INJECTION} there").run()
    at = open_tab(page, "Attribution")
    at.number_input(key="ins_attr_steps").set_value(4).run()
    at.button(key="ins_attr_go").click().run()
    assert not at.exception and not at.error
    html = at.get("html")[0].proto.body
    assert "<script>" not in html and "&lt;" in html
    assert any(m.label == "Completeness error" for m in at.metric)


def test_compare_tab(page):
    at = open_tab(page, "Base vs tuned")
    at.selectbox(key="ins_cmp_tuned").set_value("tiny-gpt2").run()
    at.button(key="ins_cmp_go").click().run()
    assert not at.exception and not at.error
    assert len(specs(at)) == 5  # changes, two lens maps, their difference, heads


def test_bad_input_shows_a_message(page):
    page.text_area(key="ins_text").set_value("   ").run()
    at = open_tab(page, "Logit lens")
    at.button(key="ins_lens_go").click().run()
    assert not at.exception and any("empty" in e.value for e in at.error)
    at.text_area(key="ins_text").set_value("word " * 2000).run()
    at.button(key="ins_lens_go").click().run()
    assert not at.exception and not at.error
    assert any("reads only its last 128" in w.value for w in at.warning)
    at.text_area(key="ins_text").set_value("The capital").run()
    at.text_input(key="ins_lens_target").set_value("two words").run()
    at.button(key="ins_lens_go").click().run()
    assert any("not one" in e.value for e in at.error)
