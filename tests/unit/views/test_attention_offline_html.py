"""Offline bertviz HTML: no network sources, escaped token text, reductions for long inputs."""
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from workbench import attention as attn
from workbench.views import bertviz as bv

INJECTION = "</script><script>alert(1)</script>"


def fake_result(T=6, L=3, H=2, tokens=None):
    w = np.tril(np.ones((T, T), np.float32))
    w /= w.sum(-1, keepdims=True)
    w = np.broadcast_to(w, (L, H, T, T)).copy()
    tokens = tokens or [f"t{i}" for i in range(T)]
    return attn.AttentionResult("fake", list(range(T)), tokens, w, tuple(range(L)), ("full",) * L, None, H)


class Scripts(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs, self.blocks = [], []

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.srcs.append(dict(attrs).get("src"))
            self.blocks.append("")

    def handle_data(self, data):
        if self.lasttag == "script" and self.blocks:
            self.blocks[-1] += data


def params_json(block: str) -> str:
    return block.split("const params = window.wbFractions(", 1)[1].split("); // HACK", 1)[0]


def parse(doc):
    p = Scripts()
    p.feed(doc)
    return p


@pytest.mark.parametrize("build", [bv.head_view, bv.model_view])
def test_no_script_comes_from_the_network(build):
    view = build(fake_result())
    scripts = parse(view.html)
    assert scripts.srcs == [None] * 4  # all inline: jQuery, d3, shim, bertviz
    assert not re.search(r"<script[^>]+src=[\"']?https?://", view.html)
    assert "require.config" not in view.html and "cdnjs" not in view.html
    assert "sourceMappingURL" not in view.html
    assert "d3js.org v5.7.0" in view.html  # the d3 bertviz is written for
    assert view.html.startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("build", [bv.head_view, bv.model_view])
def test_token_text_cannot_close_the_script(build):
    view = build(fake_result(tokens=["a", INJECTION, "b & c", "<b>x</b>", "\u2028", "z"]))
    scripts = parse(view.html)
    assert len(scripts.blocks) == 4
    assert "alert(1)" not in "".join(scripts.blocks[:3])
    params = params_json(scripts.blocks[3])
    assert "<" not in params and ">" not in params and "&" not in params
    assert json.loads(params)["attention"][0]["left_text"][1] == INJECTION  # same text, escaped


def test_params_match_the_weights():
    result = fake_result()
    data = json.loads(params_json(parse(bv.head_view(result).html).blocks[3]))
    rows = data["attention"][0]["attn"]
    assert [len(r) for r in rows[0][0]] == [1, 2, 3, 4, 5, 6]  # the zero future is not sent
    full = np.zeros(result.weights.shape)
    for li, layer in enumerate(rows):
        for h, head in enumerate(layer):
            for q, row in enumerate(head):
                full[li, h, q, : len(row)] = row
    np.testing.assert_allclose(full / bv.SCALE, result.weights, atol=5e-4)
    assert data["include_layers"] == [0, 1, 2]


def test_long_inputs_are_windowed_and_thinned():
    result = fake_result(T=300, L=30, H=9)
    view = bv.head_view(result)
    assert view.window == (300 - bv.HEAD_MAX_TOKENS, 300)
    assert len(view.layers) * 9 * bv.HEAD_MAX_TOKENS**2 <= bv.HEAD_MAX_VALUES
    assert "tokens 204–299 of 300" in view.note and f"{len(view.layers)} of 30 layers" in view.note
    assert len(view.html) < 6_000_000
    early = bv.head_view(result, start=0)
    assert early.window == (0, bv.HEAD_MAX_TOKENS)
    mv = bv.model_view(result, [0, 10, 29])
    assert mv.window[1] - mv.window[0] == bv.MODEL_MAX_TOKENS
    assert len(mv.layers) * 9 * bv.MODEL_MAX_TOKENS**2 <= bv.MODEL_MAX_LINES


def test_notebook_display_is_an_isolated_iframe(tmp_path):
    view = bv.head_view(fake_result())
    html = view._repr_html_()
    assert html.startswith("<iframe srcdoc=") and "sandbox=\"allow-scripts\"" in html
    assert "<script" not in html  # escaped inside the attribute
    path = view.save(tmp_path / "v.html")
    assert path.read_text(encoding="utf-8") == view.html


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(bv.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(bv.WorkbenchError, match="pip install mpld3"):
        bv._package_file("mpld3", "js", "d3.v5.min.js")


def test_matplotlib_is_never_imported():
    import subprocess
    import sys

    code = ("import sys, numpy as np; from workbench.views import bertviz as b; from workbench import attention as a;"
            "w=np.ones((1,1,2,2),np.float32)/2;"
            "r=a.AttentionResult('m',[0,1],['a','b'],w,(0,),('full',),None,1);"
            "b.head_view(r); b.model_view(r); print('matplotlib' in sys.modules, 'IPython' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
