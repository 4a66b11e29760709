"""Attention page through streamlit.testing (no browser, no JavaScript)."""
import json

import numpy as np
import pytest

INJECTION = "</script><script>alert(1)</script>"


@pytest.fixture
def page(open_page):
    at = open_page("pages/attention.py")
    at.selectbox(key="wb_model").set_value("tiny-llama").run()
    return at


def show(at, text="The capital of France is Paris."):
    at.text_area(key="att_text").set_value(text).run()
    at.button(key="att_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at.session_state["wb_attention"]


def specs(at):
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def open_tab(at, name):
    """Tabs run lazily: only the open one is computed and sent."""
    at.session_state["wb_attention_tab"] = name
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_show_attention_draws_every_view(page):
    result = show(page)
    L, H, T, _ = result.weights.shape
    assert (L, H) == (2, 4) and T == len(result.tokens)
    np.testing.assert_allclose(result.weights.sum(-1), 1, atol=1e-5)
    figures = specs(page)
    assert len(figures) == 2 and not page.get("iframe")  # grid and zoomed head; other tabs wait
    grid = figures[0]
    assert sum(t["type"] == "heatmap" for t in grid["data"]) == L * H
    assert "query" in grid["data"][0]["hovertemplate"] and "key" in grid["data"][0]["hovertemplate"]
    assert any("forward" in c.value for c in page.caption)

    srcdoc = open_tab(page, "Head view").get("iframe")[0].proto.srcdoc
    assert "Paris" in srcdoc and "cdnjs" not in srcdoc and "require.config" not in srcdoc
    assert len(specs(page)) == 0
    model_doc = open_tab(page, "Model view").get("iframe")[0].proto.srcdoc
    assert "<title>Model view: tiny-llama</title>" in model_doc and "include_heads" in model_doc
    assert len(page.get("iframe")) == 1
    titles = [f["layout"]["title"]["text"] for f in specs(open_tab(page, "Summaries"))]
    assert any("mean over 4 heads" in t for t in titles) and any("rollout" in t for t in titles)
    assert any("Entropy" in t for t in titles)


def test_memory_estimate_is_shown_before_running(page):
    page.text_area(key="att_text").set_value("word " * 20).run()
    assert any("peak" in c.value and "budget" in c.value for c in page.caption)


def test_injection_text_is_data_not_markup(page):
    show(page, f"Hi {INJECTION} there")
    srcdoc = open_tab(page, "Head view").get("iframe")[0].proto.srcdoc
    assert "<script>alert" not in srcdoc
    scripts = script_blocks(srcdoc)
    assert len(scripts) == 4  # jQuery, d3, the requirejs shim, bertviz with its parameters
    assert "\\u003c/" in scripts[-1]  # the tokenizer splits the tag; "</" stays escaped


def script_blocks(doc: str) -> list[str]:
    """Contents of every <script> element, split the way an HTML parser splits them."""
    from html.parser import HTMLParser

    blocks = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "script":
                blocks.append("")

        def handle_data(self, data):
            if self.lasttag == "script" and blocks:
                blocks[-1] += data

    Parser().feed(doc)
    return blocks


def test_empty_text_says_how_to_fix_it(page):
    page.text_area(key="att_text").set_value("   ").run()
    assert not page.exception
    assert any("empty" in e.value for e in page.error)


def test_too_long_text_says_how_long_fits(page):
    page.text_area(key="att_text").set_value("word " * 400).run()
    assert not page.exception
    assert any("reads at most 128" in e.value for e in page.error)  # said before running anything
    assert page.button(key="att_go").disabled


def test_last_generation_and_step_view(open_page):
    at = open_page("pages/generate.py")
    at.selectbox(key="wb_model").set_value("tiny-gemma3").run()
    at.text_area(key="gen_prompt").set_value("Once upon a time").run()
    at.number_input(key="gen_max_new").set_value(5).run()
    at.button(key="gen_go").click().run()
    last = at.session_state["wb_last_generation"]
    at.switch_page("pages/attention.py").run()
    at.segmented_control(key="att_source").set_value("Last generation").run()
    at.button(key="att_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    result = at.session_state["wb_attention"]
    assert result.token_ids == list(last.prompt_ids) + list(last.token_ids)
    assert set(result.layer_kinds) == {"sliding", "full"}
    if last.token_ids:
        open_tab(at, "While generating")
        at.button(key="att_gen_replay").click().run()
        assert not at.exception
        _, gen = at.session_state["wb_attention_generation"]
        assert gen.steps == len(last.token_ids)
        steps = at.select_slider(key="att_gen_step")
        steps.set_value(gen.steps - 1).run()
        assert any("Step" in f["layout"]["title"]["text"] for f in specs(at))


def test_generate_with_attention_and_ablation(page):
    show(page)
    open_tab(page, "While generating")
    page.button(key="att_gen_go").click().run()
    assert not page.exception
    _, gen = page.session_state["wb_attention_generation"]
    assert gen.steps >= 1
    open_tab(page, "Switch heads off")
    page.multiselect(key="att_ab_heads").set_value(["0.0", "1.2"]).run()
    page.button(key="att_ab_go").click().run()
    assert not page.exception
    comparison = page.session_state["att_ablation"]
    assert comparison.heads == ((0, 0), (1, 2))
    assert any("switched off" in f["layout"]["title"]["text"] for f in specs(page))
    page.button(key="att_ab_regen").click().run()
    assert not page.exception
    base, ablated = page.session_state["att_ab_texts"]
    assert len(base.token_ids) == len(ablated.token_ids) == 12  # the "Regenerate tokens" default
    shown = [c.value for c in page.code]
    assert (base.text or "(nothing)") in shown and (ablated.text or "(nothing)") in shown


def test_no_last_generation_explains(page):
    page.segmented_control(key="att_source").set_value("Last generation").run()
    assert any("Generate" in i.value for i in page.info)
