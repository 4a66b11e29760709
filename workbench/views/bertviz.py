"""bertviz's head view and model view as self-contained HTML that never touches the network.

Stock bertviz loads RequireJS, d3 and jQuery from a CDN. Here the page is built from bertviz's
own ``head_view.js`` / ``model_view.js`` (read from the installed ``bertviz`` package, with their
``require.config`` CDN block removed), d3 5.7.0 inlined from the installed ``mpld3`` package
(the version bertviz's handlers are written for) and jQuery inlined from ``XStatic-jQuery``. A
few lines of our own hand ``window.d3`` and ``window.jQuery`` to bertviz's ``requirejs([...], fn)``.
The packages are found with ``importlib.util.find_spec``: neither bertviz's Python (IPython)
nor matplotlib is imported.

The parameters are the ones bertviz's own ``head_view``/``model_view`` build. They are written
into a ``<script>`` as JSON with ``<``, ``>`` and ``&`` escaped, so token text such as
``</script><script>alert(1)</script>`` stays text (bertviz draws tokens with d3's ``.text``).

Long inputs: a view keeps at most ``max_tokens`` tokens (a window) and as many layers as fit a
budget of values; ``OfflineView.note`` says what was left out.
"""
from __future__ import annotations

import html as html_lib
import importlib.util
import json
import re
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from ..attention.results import AttentionResult
from ..errors import InvalidInputError, WorkbenchError

HEAD_MAX_TOKENS = 96
HEAD_MAX_VALUES = 1_200_000  # layers * heads * tokens^2 written into the head view
MODEL_MAX_TOKENS = 48
MODEL_MAX_LINES = 160_000  # layers * heads * tokens^2 lines the model view draws at once
SCALE = 1000  # weights are written as integer thousandths

_REQUIRE_CONFIG = re.compile(r"require\.config\(\{.*?\}\s*\}\);", re.S)
# bertviz draws the model view 970 px wide whatever the frame: zoom it to the frame's width.
_FIT_WIDTH = """
(function () {
  function fit() { document.body.style.zoom = Math.min(1, window.innerWidth / 990); }
  window.addEventListener("resize", fit);
  fit();
})();
"""
_SHIM = """
// Offline stand-in for RequireJS: bertviz asks for ['jquery', 'd3'].
window.requirejs = function (deps, fn) {
  var mods = {jquery: window.jQuery, d3: window.d3};
  return fn.apply(null, deps.map(function (d) { return mods[d]; }));
};
// Weights travel as integer thousandths without each row's trailing zeros (a causal map's
// future): bertviz wants full rows of fractions.
window.wbFractions = function (p) {
  p.attention.forEach(function (a) {
    var n = a.right_text.length;
    a.attn = a.attn.map(function (layer) { return layer.map(function (head) {
      return head.map(function (row) {
        var full = new Array(n);
        for (var i = 0; i < n; i++) { full[i] = i < row.length ? row[i] / 1000 : 0; }
        return full;
      });
    }); });
  });
  return p;
};
"""


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WorkbenchError(
            f"The '{package}' package is missing, and the offline attention views need a file from it. "
            f"Install it: pip install {'XStatic-jQuery' if package.startswith('xstatic') else package}."
        )
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    if not path.is_file():
        raise WorkbenchError(f"{path} is missing from the installed '{package}' package: reinstall it.")
    return path


def _script_safe(js: str) -> str:
    js = re.sub(r"^//# sourceMappingURL=.*$", "", js, flags=re.M)  # devtools would fetch it
    return js.replace("</script", "<\\/script").replace("<!--", "<\\!--")


@lru_cache(maxsize=None)
def libraries() -> str:
    """Inline ``<script>`` tags: jQuery, d3 v5 and the requirejs shim."""
    d3 = _package_file("mpld3", "js", "d3.v5.min.js").read_text(encoding="utf-8")
    jquery = _package_file("xstatic.pkg.jquery", "data", "jquery.min.js").read_text(encoding="utf-8")
    return "".join(f"<script>\n{_script_safe(js)}\n</script>\n" for js in (jquery, d3, _SHIM))


@lru_cache(maxsize=None)
def _bertviz_js(name: str) -> str:
    js = _package_file("bertviz", f"{name}.js").read_text(encoding="utf-8")
    js, n = _REQUIRE_CONFIG.subn("", js)
    if n != 1 or "PYTHON_PARAMS" not in js:
        raise WorkbenchError(
            f"bertviz's {name}.js does not look like bertviz 1.4.1's (its require.config block "
            "or PYTHON_PARAMS marker moved): install bertviz==1.4.1."
        )
    return js


def script_json(obj) -> str:
    """JSON safe to place inside ``<script>``: no ``<``, ``>``, ``&`` or line separators."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


@dataclass(frozen=True)
class OfflineView:
    """A bertviz view as a standalone HTML document. Shows inline in Jupyter (an iframe)."""

    kind: str  # "head" | "model"
    html: str
    height: int  # px an iframe needs
    layers: tuple[int, ...]
    heads: tuple[int, ...]
    window: tuple[int, int]  # token positions [start, end)
    note: str  # what was reduced; "" when the view shows everything

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.html, encoding="utf-8")
        return path

    def _repr_html_(self) -> str:
        return (f'<iframe srcdoc="{html_lib.escape(self.html, quote=True)}" sandbox="allow-scripts" '
                f'style="width:100%;height:{self.height}px;border:0"></iframe>')


def _window(n: int, max_tokens: int, start: int | None) -> tuple[int, int]:
    if n <= max_tokens:
        return 0, n
    start = n - max_tokens if start is None else min(max(int(start), 0), n - max_tokens)
    return start, start + max_tokens


def _pick_layers(available: Sequence[int], wanted: Sequence[int] | None, per_layer: int, budget: int) -> list[int]:
    layers = list(available) if wanted is None else [int(x) for x in wanted]
    missing = [x for x in layers if x not in available]
    if missing:
        raise InvalidInputError(f"Layers {missing} were not computed; computed layers: {list(available)}.")
    if not layers:
        raise InvalidInputError("Pick at least one layer for the view.")
    fit = max(1, budget // max(per_layer, 1))
    if len(layers) <= fit:
        return layers
    picks = np.linspace(0, len(layers) - 1, fit).round().astype(int)
    return [layers[i] for i in sorted(set(picks.tolist()))]


def _note(result: AttentionResult, window: tuple[int, int], layers: list[int], wanted: int) -> str:
    parts = []
    n = result.num_tokens
    if window != (0, n):
        parts.append(f"tokens {window[0]}–{window[1] - 1} of {n} (weight on keys outside the window is not drawn)")
    if len(layers) < wanted:
        parts.append(f"{len(layers)} of {wanted} layers ({', '.join(map(str, layers))})")
    return ("Showing " + "; ".join(parts) + ".") if parts else ""


def _document(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{html_lib.escape(title)}</title>"
        "<style>body{margin:8px;font-family:'Helvetica Neue',Helvetica,Arial,sans-serif;background:#fff}"
        ".wb-note{color:#555;font-size:13px;margin:0 0 6px}"
        # tens of thousands of attention lines: skip anti-aliasing, paint them faster
        "line{shape-rendering:optimizeSpeed}</style></head>\n<body>\n"
        f"{body}\n</body></html>\n"
    )


def _attn_values(weights: np.ndarray) -> list:
    """``(layers, heads, q, k)`` as integer thousandths, each row cut after its last non-zero."""
    ints = np.rint(weights * SCALE).astype(np.int32)
    nonzero = ints != 0
    k = ints.shape[-1]
    # length of each row up to its last non-zero value (0 for an all-zero row)
    lengths = np.where(nonzero.any(-1), k - np.argmax(nonzero[..., ::-1], axis=-1), 0)
    return [[[row[:n] for row, n in zip(head.tolist(), head_len.tolist())]
             for head, head_len in zip(layer, layer_len)] for layer, layer_len in zip(ints, lengths)]


def _text_px(token: str) -> int:
    """Rough width of a token in bertviz's 15 px font: wide (CJK, emoji) characters 15 px, others 9."""
    return sum(15 if ord(c) >= 0x2E80 else 9 for c in token)


def _params_js(params: dict) -> str:
    return f"window.wbFractions({script_json(params)})"


def head_view(
    result: AttentionResult,
    layers: Sequence[int] | None = None,
    *,
    start: int | None = None,
    max_tokens: int = HEAD_MAX_TOKENS,
    max_values: int = HEAD_MAX_VALUES,
    layer: int | None = None,
) -> OfflineView:
    """bertviz ``head_view`` for the kept layers (or ``layers``), offline.

    Texts longer than ``max_tokens`` show a window of tokens from ``start`` (default: the last
    ``max_tokens``); layers beyond ``max_values`` are thinned evenly."""
    a, b = _window(result.num_tokens, max_tokens, start)
    size = b - a
    picked = _pick_layers(result.layers, layers, result.num_heads * size * size, max_values)
    rows = [result.index(x) for x in picked]
    attn = np.stack([result.weights[r, :, a:b, a:b] for r in rows])  # window first: no copy of every layer
    tokens = list(result.tokens[a:b])
    vis_id = f"bertviz-{uuid.uuid4().hex}"
    params = {
        "attention": [{"name": None, "attn": _attn_values(attn), "left_text": tokens, "right_text": tokens}],
        "default_filter": "0",
        "root_div_id": vis_id,
        "layer": layer if layer in picked else picked[0],
        "heads": None,
        "include_layers": picked,
    }
    note = _note(result, (a, b), picked, len(layers) if layers is not None else len(result.layers))
    # bertviz right-aligns the left column at ~100 px: room for longer tokens (CJK words) on the left
    pad = max(0, max((_text_px(t) for t in tokens), default=0) - 95)
    body = (
        (f'<p class="wb-note">{html_lib.escape(note)}</p>\n' if note else "")
        + (f"<style>#{vis_id} #vis{{padding-left:{pad}px}} #{vis_id} #vis svg{{overflow:visible}}</style>\n"
           if pad else "")
        + f'<div id="{vis_id}"><span style="user-select:none">Layer: <select id="layer"></select></span>'
        "<div id='vis'></div></div>\n"
        + libraries()
        + "<script>\n" + _bertviz_js("head_view").replace("PYTHON_PARAMS", _params_js(params)) + "\n</script>"
    )
    height = int(size * 22.5 + 30 + 60 + (24 if note else 0))
    return OfflineView("head", _document(f"Head view: {result.model}", body), height, tuple(picked),
                       tuple(range(result.num_heads)), (a, b), note)


def model_view(
    result: AttentionResult,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    *,
    start: int | None = None,
    max_tokens: int = MODEL_MAX_TOKENS,
    max_lines: int = MODEL_MAX_LINES,
) -> OfflineView:
    """bertviz ``model_view`` (a thumbnail per layer and head; click one for detail), offline."""
    a, b = _window(result.num_tokens, max_tokens, start)
    size = b - a
    head_list = list(range(result.num_heads)) if heads is None else sorted({int(h) for h in heads})
    if not head_list or not all(0 <= h < result.num_heads for h in head_list):
        raise InvalidInputError(f"Heads must be between 0 and {result.num_heads - 1}.")
    picked = _pick_layers(result.layers, layers, len(head_list) * size * size, max_lines)
    rows = [result.index(x) for x in picked]
    attn = np.stack([result.weights[r, :, a:b, a:b][head_list] for r in rows])  # window first
    tokens = list(result.tokens[a:b])
    vis_id = f"bertviz-{uuid.uuid4().hex}"
    params = {
        "attention": [{"name": None, "attn": _attn_values(attn), "left_text": tokens, "right_text": tokens}],
        "default_filter": "0",
        "display_mode": "light",
        "root_div_id": vis_id,
        "include_layers": picked,
        "include_heads": head_list,
        "total_heads": result.num_heads,
    }
    note = _note(result, (a, b), picked, len(layers) if layers is not None else len(result.layers))
    body = (
        (f'<p class="wb-note">{html_lib.escape(note)}</p>\n' if note else "")
        + f'<div id="{vis_id}"><span style="user-select:none"></span><div id=\'vis\'></div></div>\n'
        + libraries()
        + "<script>\n" + _bertviz_js("model_view").replace("PYTHON_PARAMS", _params_js(params))
        + _FIT_WIDTH + "\n</script>"
    )
    # bertviz: thumbnail box height 7 * 12 / heads px per token, 5 px padding, 38 px of axis labels
    thumb = size * 7 * 12 / result.num_heads + 10
    detail = size * 18 + 30 + 25
    height = int(max(len(picked) * thumb + 38, detail) + 40 + (24 if note else 0))
    return OfflineView("model", _document(f"Model view: {result.model}", body), height, tuple(picked),
                       tuple(head_list), (a, b), note)
