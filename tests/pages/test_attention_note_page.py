"""Attention page: the teaching note (formula + the real scores of one head and query)."""
import json

import numpy as np
import pytest

from workbench.attention.scores import softmax


@pytest.fixture
def open_attention(open_page):
    def _open(model_id, text="The capital of France is Paris. The capital of Italy is"):
        at = open_page("pages/attention.py")
        at.selectbox(key="wb_model").set_value(model_id).run()
        at.text_area(key="att_text").set_value(text).run()
        at.button(key="att_go").click().run()
        assert not at.exception, [e.value for e in at.exception]
        return at
    return _open


def open_note(at):
    at.session_state["att_note"] = True
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_note_is_built_only_when_opened(open_attention):
    at = open_attention("tiny-llama")
    assert not any(name == "breakdown" for name, _ in at.session_state["att_memo"])  # no model run for it
    assert not at.latex


def test_note_shows_scores_whose_softmax_is_the_row_on_the_page(open_attention):
    at = open_note(open_attention("tiny-llama"))
    result = at.session_state["wb_attention"]
    T = result.num_tokens
    assert "softmax" in at.latex[0].value and "sqrt{d_k}" in at.latex[0].value
    text = " ".join(m.value for m in at.markdown)
    assert "4 query heads but only 2 key/value heads" in text and "h* // 2" in text
    assert "causal mask" in text
    at.selectbox(key="att_note_layer").set_value(0).run()
    at.selectbox(key="att_note_head").set_value(3).run()
    at.selectbox(key="att_note_query").set_value(T - 2).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert len(table) == T - 1 and list(table["key token"]) == result.tokens[: T - 1]
    scores = np.concatenate([table["score q·k×scale"].to_numpy(), [-np.inf]])  # + the one future key
    np.testing.assert_allclose(softmax(scores), result.weights[0, 3, T - 2], atol=1e-5)
    text = " ".join(m.value for m in at.markdown)
    assert "head 3 reads key/value head 1, shared by query heads 2–3" in text
    assert "1 future key get" in text and "1/√d_k = 1/√8" in text
    check = [s.value for s in at.success if "Check" in s.value]
    assert len(check) == 1 and f"row {T - 2} of layer 0, head 3" in check[0]
    diff = float(check[0].rsplit(" ", 1)[1].rstrip("."))
    assert diff < 1e-5
    fig = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if "query" in
               json.loads(c.proto.spec)["layout"]["title"]["text"])
    assert [t["type"] for t in fig["data"]] == ["bar", "bar"]
    assert len(fig["data"][1]["x"]) == T - 1 and fig["data"][1]["x"][0] == f"0 {result.tokens[0]}"


def test_gemma_note_explains_sharing_scaling_and_the_window(open_attention):
    at = open_note(open_attention("tiny-gemma3"))
    text = " ".join(m.value for m in at.markdown)
    assert "4 query heads but only 1 key/value head" in text
    assert "Sliding-window layers" in text and "last 4 tokens" in text
    at.selectbox(key="att_note_layer").set_value(0).run()  # the sliding layer
    text = " ".join(m.value for m in at.markdown)
    assert "query_pre_attn_scalar" in text and "RMS-normalised" in text
    assert "outside the window of 4" in text
    table = at.dataframe[0].value
    assert np.isneginf(table["score q·k×scale"].to_numpy()[:-4]).all()
    assert (table["weight (softmax)"].to_numpy()[:-4] == 0).all()
    assert any("Check" in s.value for s in at.success)


def test_gpt2_note_says_no_rotary(open_attention):
    at = open_note(open_attention("tiny-gpt2"))
    text = " ".join(m.value for m in at.markdown)
    assert "Multi-head attention" in text and "no rotary embedding" in text
    assert any("Check" in s.value for s in at.success)
