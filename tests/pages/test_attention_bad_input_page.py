"""Attention page with bad input (AppTest): a 2,000-token text, too little memory, CJK and emoji,
HTML/script text, empty text. Each case: a clear message or reduced views that say what was
reduced, and the page keeps running."""
import json
import re
import time

import pytest

from workbench import attention as attn
from workbench.views.attention import plotly_text

CJK = "日本語のテキスト。 Emoji 🙂 and 🎉 <b>tags</b> too"
PAYLOAD = "</script><script>alert(1)</script><img src=x onerror=alert(2)>"


@pytest.fixture
def at(open_page, tiny_store, long_model_dir):
    tiny_store.add("tiny-long", local_dir=long_model_dir, name="Tiny long")
    page = open_page("pages/attention.py")
    page.selectbox(key="wb_model").set_value("tiny-long").run()
    return page


def ok(page):
    assert not page.exception, [e.value for e in page.exception]
    return page


def specs(page):
    return [json.loads(c.proto.spec) for c in page.get("plotly_chart")]


def open_tab(page, name):
    page.session_state["wb_attention_tab"] = name
    return ok(page.run())


def text_of(tokens: int) -> str:
    words = ("The capital of France is Paris. Once upon a time there was a small model. " * 400).split(" ")
    return " ".join(words[: int(tokens * 0.8825)])


def test_2000_tokens_stay_usable_and_say_what_was_reduced(at):
    text = text_of(2000)
    ok(at.text_area(key="att_text").set_value(text).run())
    estimate = next(c.value for c in at.caption if "peak" in c.value)
    n = int(estimate.split(" tokens")[0])
    assert 1950 <= n <= 2050, n
    times = {}
    t = time.perf_counter()
    ok(at.button(key="att_go").click().run())
    times["run + heads tab"] = time.perf_counter() - t
    result = at.session_state["wb_attention"]
    assert result.weights.shape == (2, 4, n, n)
    grid, zoom = specs(at)
    assert f"{n} tokens drawn as 48×48 blocks" in grid["layout"]["meta"]["note"]
    assert "strongest keys of each query" in zoom["layout"]["meta"]["note"]
    assert zoom["data"][0]["type"] == "scattergl"

    t = time.perf_counter()
    head = open_tab(at, "Head view")
    times["head view"] = time.perf_counter() - t
    assert at.slider(key="att_hv_start").value == n - 96
    assert any(f"of {n}" in c.value and "outside the window is not drawn" in c.value for c in head.caption)
    srcdoc = at.get("iframe")[0].proto.srcdoc
    assert len(srcdoc) < 2_000_000
    t = time.perf_counter()
    open_tab(at, "Model view")
    times["model view"] = time.perf_counter() - t
    assert any(f"tokens {n - 48}–{n - 1} of {n}" in c.value for c in at.caption)
    t = time.perf_counter()
    open_tab(at, "Summaries")
    times["summaries"] = time.perf_counter() - t
    notes = [f["layout"]["meta"]["note"] for f in specs(at)]
    assert sum(f"{n} tokens drawn as 128×128 blocks" in x for x in notes) == 2  # mean and rollout

    open_tab(at, "While generating")
    at.number_input(key="att_gen_new").set_value(3).run()
    t = time.perf_counter()
    ok(at.button(key="att_gen_go").click().run())
    times["generate 3 tokens"] = time.perf_counter() - t
    _, gen = at.session_state["wb_attention_generation"]
    assert gen.prompt_len == n and gen.steps == 3

    at.session_state["att_note"] = True
    t = time.perf_counter()
    ok(at.run())
    times["teaching note"] = time.perf_counter() - t
    assert len(at.dataframe[0].value) == n  # every key of the last query
    fig = next(f for f in specs(at) if "over keys" in f["layout"]["title"]["text"])
    assert f"{n} visible keys: showing the 48 with the most weight" in fig["layout"]["meta"]["note"]
    assert any("Check" in s.value for s in at.success)
    print(f"\n{n} tokens, seconds per step:", {k: round(v, 2) for k, v in times.items()})
    assert sum(times.values()) < 120


def test_not_enough_memory_computes_the_layers_that_fit(at, monkeypatch):
    text = text_of(1000)
    ok(at.text_area(key="att_text").set_value(text).run())
    n = int(next(c.value for c in at.caption if "peak" in c.value).split(" tokens")[0])
    one_layer = 4 * n * n * 4  # heads x T x T float32
    monkeypatch.setattr("workbench.attention.budget.available_memory", lambda: int(2 * (5 * one_layer)))  # budget fits ~1 layer
    ok(at.text_area(key="att_text").set_value(text).run())
    assert any("do not fit in memory" in w.value for w in at.warning)
    assert at.multiselect(key="att_keep_layers").value == [0]
    ok(at.button(key="att_go").click().run())
    result = at.session_state["wb_attention"]
    assert result.layers == (0,) and result.weights.shape[0] == 1
    assert len(specs(at)) == 2  # the views still draw, from the one layer

    monkeypatch.setattr("workbench.attention.budget.available_memory", lambda: one_layer)  # not even one layer
    ok(at.run())
    assert any("Even one layer" in e.value and "shorten it to about" in e.value for e in at.error)
    assert at.button(key="att_go").disabled


def every_label(page) -> str:
    """All token text the page sends: plotly categories and titles, iframes, tables, markdown."""
    parts = []
    for f in specs(page):
        parts.append(f["layout"].get("title", {}).get("text", ""))
        for tr in f["data"]:
            for axis in ("x", "y"):
                if isinstance(tr.get(axis), list):
                    parts.extend(str(v) for v in tr[axis])
    parts += [i.proto.srcdoc for i in page.get("iframe")]
    return "\n".join(parts)


def bertviz_tokens(srcdoc: str) -> list[str]:
    start = srcdoc.index('"left_text":') + len('"left_text":')
    end = srcdoc.index("]", start) + 1
    return json.loads(srcdoc[start:end])


def test_cjk_and_emoji_tokens_in_every_view(at):
    ok(at.text_area(key="att_text").set_value(CJK).run())
    ok(at.button(key="att_go").click().run())
    tokens = at.session_state["wb_attention"].tokens
    shown = re.sub("‹[0-9a-f ]+›", "", "".join(tokens))  # ‹f0 9f›: the first bytes of a split emoji
    assert shown.replace("␣", " ") == CJK
    assert "␣‹f0 9f›" in tokens  # a token holding a space and an emoji's start shows both
    assert any("日本" in t for t in tokens) and any("🙂" in t for t in tokens) and any("🎉" in t for t in tokens)
    labels = plotly_text(attn.position_labels(tokens))
    zoom = specs(at)[1]
    assert zoom["data"][0]["x"] == labels  # every token labelled, in order
    for tab in ("Head view", "Model view"):
        assert bertviz_tokens(open_tab(at, tab).get("iframe")[0].proto.srcdoc) == tokens
    open_tab(at, "Summaries")
    assert specs(at)[0]["data"][0]["x"] == labels
    open_tab(at, "While generating")
    ok(at.button(key="att_gen_go").click().run())
    gen_fig = next(f for f in specs(at) if "Step 1/" in f["layout"]["title"]["text"])
    assert gen_fig["data"][0]["x"][: len(tokens)] == labels
    at.session_state["att_note"] = True
    ok(at.run())
    assert list(at.dataframe[0].value["key token"]) == tokens


def test_html_and_script_text_is_text_in_every_view(at):
    ok(at.text_area(key="att_text").set_value(PAYLOAD).run())
    ok(at.button(key="att_go").click().run())
    tokens = at.session_state["wb_attention"].tokens
    assert "".join(tokens).replace("␣", " ") == PAYLOAD
    sent = [every_label(at)]
    for tab in ("Head view", "Model view", "Summaries", "While generating"):
        open_tab(at, tab)
        if tab == "While generating":
            ok(at.button(key="att_gen_go").click().run())
        sent.append(every_label(at))
    at.session_state["att_note"] = True
    sent.append(every_label(ok(at.run())))
    plotly = "\n".join(s for s in sent if "<!DOCTYPE" not in s)
    assert "&lt;" in plotly and "<script" not in plotly and "<img" not in plotly
    for doc in (i.proto.srcdoc for i in at.get("iframe")):
        assert "<img" not in doc.split("<script>")[0]
    md = "\n".join(m.value for m in at.markdown) + "\n".join(c.value for c in at.caption)
    assert "<img" not in md and "<script" not in md


def test_empty_text_says_what_to_do(at):
    for text in ("", "\n\n  \t"):
        ok(at.text_area(key="att_text").set_value(text).run())
        assert any("empty" in e.value and "type something" in e.value for e in at.error)
        assert at.button(key="att_go").disabled
