"""Figures and HTML of the Inside views. Every builder takes a result from ``workbench.interpret``
and returns a plotly ``Figure`` (or an HTML string); nothing here runs a model.

Token text reaches plotly through ``plotly_text`` (so ``<b>`` in a token shows as typed) and
reaches HTML through ``html.escape``. Lens maps wider than ``LENS_MAX_COLUMNS`` positions draw
their last columns only; the title says so.
"""
from __future__ import annotations

import html
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from ..common import human_bytes
from .attention import plotly_text
from .generation import prob_color

if TYPE_CHECKING:
    from ..interpret.architecture import Architecture
    from ..interpret.attribution import AttributionResult
    from ..interpret.compare import Comparison
    from ..interpret.lens import LensResult

LENS_MAX_COLUMNS = 48
LENS_TEXT_COLUMNS = 24  # wider maps show the top token on hover only (the cell text overlapped)
DIAGRAM_MAX_LAYERS = 6  # layers drawn one by one; the rest are one "× n" box


def _finish(fig: go.Figure, title: str, note: str = "", height: int = 400) -> go.Figure:
    text = title + (f"<br><sup>{plotly_text(note)}</sup>" if note else "")
    fig.update_layout(title=dict(text=text, x=0, font=dict(size=15)), height=height,
                      margin=dict(l=10, r=10, t=70 if note else 45, b=10), meta={"note": note})
    return fig


# --- architecture ---------------------------------------------------------------------------------

def architecture_diagram(arch: Architecture) -> go.Figure:
    """The blocks top to bottom: embedding, the layers (attention with its query and key/value
    heads, MLP, norms), final norm, LM head; a tied head is linked back to the embedding."""
    df = arch.frame()
    per = df.groupby("component")["params"].sum().to_dict()
    boxes = []  # (y, x0, x1, label, colour)
    y = 0
    boxes.append((y, 0, 6, (f"embedding {arch.vocab_size:,} × {arch.hidden_size}<br>"
                            f"{per.get('embedding', 0):,} params · positions: {arch.positions}"), "#cfe3f7"))
    shown = list(range(arch.layers))
    if arch.layers > DIAGRAM_MAX_LAYERS:
        shown = [0, 1, 2, None, arch.layers - 1]
    for layer in shown:
        y -= 1
        if layer is None:
            boxes.append((y, 0, 6, f"⋮ layers 3–{arch.layers - 2}: the same blocks", "#f4f4f4"))
            continue
        kind = arch.layer_kinds[layer] if layer < len(arch.layer_kinds) else "full"
        attn = per.get(f"layer {layer} / attention", 0)
        mlp = per.get(f"layer {layer} / mlp", 0)
        norms = per.get(f"layer {layer} / norms", 0)
        boxes.append((y, 0, 1.2, f"layer {layer}<br>norms {norms:,}", "#eeeeee"))
        boxes.append((y, 1.3, 3.6, (f"attention ({kind}): {arch.heads} q / {arch.kv_heads} kv heads × "
                                    f"{arch.head_dim}<br>{attn:,} params"), "#fde2c8"))
        boxes.append((y, 3.7, 6, (f"MLP {arch.hidden_size} → {arch.intermediate_size} → {arch.hidden_size} "
                                  f"({arch.activation})<br>{mlp:,} params"), "#d8f0d2"))
    y -= 1
    boxes.append((y, 0, 6, f"final norm ({arch.norm}) · {per.get('final norm', 0):,} params", "#eeeeee"))
    y -= 1
    head = (f"LM head {arch.hidden_size} → {arch.vocab_size:,}: tied to the embedding (no params of its own)"
            if arch.tied else f"LM head {arch.hidden_size} → {arch.vocab_size:,} · {per.get('lm head', 0):,} params")
    if arch.logit_softcap:
        head += f"<br>logits softcapped: tanh(x / {arch.logit_softcap:g}) × {arch.logit_softcap:g}"
    boxes.append((y, 0, 6, head, "#e5dcf5"))
    fig = go.Figure()
    for by, x0, x1, label, colour in boxes:
        fig.add_shape(type="rect", x0=x0, x1=x1, y0=by - 0.42, y1=by + 0.42, fillcolor=colour,
                      line=dict(color="#888", width=1))
        fig.add_annotation(x=(x0 + x1) / 2, y=by, text=plotly_text(label).replace("&lt;br&gt;", "<br>"),
                           showarrow=False, font=dict(size=11))
    if arch.tied:
        fig.add_shape(type="path", path=f"M 6 {y} C 6.8 {y}, 6.8 0, 6 0", line=dict(color="#7a5cc2", dash="dash"))
        fig.add_annotation(x=6.55, y=y / 2, text="tied", showarrow=False, textangle=-90,
                           font=dict(color="#7a5cc2"))
    fig.update_xaxes(visible=False, range=[-0.1, 7])
    fig.update_yaxes(visible=False, range=[y - 0.6, 0.6])
    fig.update_layout(plot_bgcolor="white", showlegend=False)
    return _finish(fig, f"{arch.model}: {arch.kind}, {arch.layers} layers, {arch.num_parameters:,} parameters",
                   height=90 + 62 * (len(boxes) - 2 * len([s for s in shown if s is not None])))


def parameter_treemap(arch: Architecture) -> go.Figure:
    """Parameters by component: model → group → layer → tensor (tied weights once)."""
    ids, labels, parents, values, hover = [arch.model], [arch.model], [""], [arch.counted], [""]
    df = arch.frame()
    for group, gdf in df.groupby("group", sort=False):
        ids.append(group), labels.append(group), parents.append(arch.model)
        values.append(int(gdf["params"].sum())), hover.append(human_bytes(4 * int(gdf["params"].sum())) + " fp32")
        if gdf["layer"].notna().any():
            for layer, ldf in gdf.groupby("layer"):
                lid = f"{group}/{int(layer)}"
                ids.append(lid), labels.append(f"layer {int(layer)}"), parents.append(group)
                values.append(int(ldf["params"].sum())), hover.append(human_bytes(4 * int(ldf["params"].sum())) + " fp32")
                for _, t in ldf.iterrows():
                    ids.append(t["name"]), labels.append(t["name"].rsplit(".", 2)[-2] if "." in t["name"] else t["name"])
                    parents.append(lid), values.append(int(t["params"])), hover.append(f"{t['shape']}")
        else:
            for _, t in gdf.iterrows():
                ids.append(t["name"]), labels.append(t["name"]), parents.append(group)
                values.append(int(t["params"])), hover.append(f"{t['shape']}")
    fig = go.Figure(go.Treemap(ids=ids, labels=plotly_text(labels), parents=parents, values=values,
                               customdata=hover, branchvalues="total", maxdepth=3,
                               hovertemplate="%{label}<br>%{value:,} params<br>%{customdata}<extra></extra>"))
    tied = " (LM head tied to the embedding: counted once)" if arch.tied else ""
    return _finish(fig, f"Parameters by component: {arch.counted:,}{tied}", height=480)


# --- logit lens -----------------------------------------------------------------------------------

def lens_heatmap(result: LensResult, max_columns: int = LENS_MAX_COLUMNS) -> go.Figure:
    """Layers (1 at the bottom, L at the top) × positions: colour = the top token's probability,
    text = the top token; hover = the top 3. Only the last ``max_columns`` positions are drawn."""
    L, P, _ = result.top_ids.shape
    cols = slice(max(0, P - max_columns), P)
    pos = result.positions[cols]
    x = [f"{p} {result.tokens[p]}" for p in pos]
    z = result.top_probs[:, cols, 0]
    text = [[plotly_text(result.label(i)) for i in row] for row in result.top_ids[:, cols, 0]]
    hover = [[plotly_text(" | ".join(f"{result.label(i)} {p:.1%}" for i, p in
                                     zip(result.top_ids[l, c, :3], result.top_probs[l, c, :3])))
              for c in range(cols.start, P)] for l in range(L)]
    fig = go.Figure(go.Heatmap(  # tokens written in the cells only while they fit; hover has them always
        z=z, x=plotly_text(x), y=list(range(1, L + 1)), text=text,
        texttemplate="%{text}" if len(pos) <= LENS_TEXT_COLUMNS else None,
        customdata=hover, zmin=0, zmax=1, colorscale="Viridis", colorbar=dict(title="p(top)"),
        hovertemplate="layer %{y}, after %{x}<br>%{customdata}<extra></extra>", textfont=dict(size=9)))
    fig.update_xaxes(tickangle=-45, title="position (the prediction after this token)")
    fig.update_yaxes(title="layer", dtick=max(1, L // 15))
    note = result.note
    if P > max_columns:
        note = (note + " " if note else "") + f"Drawing the last {max_columns} of {P} lensed positions."
    return _finish(fig, f"Logit lens: each layer's top next token ({result.model})", note,
                   height=max(300, 60 + 22 * L))


def target_figure(result: LensResult, index: int = -1) -> go.Figure:
    """Probability (left axis) and rank (right axis, log) of the target token across layers at one
    position; a dashed line marks the first layer whose top-1 is the final answer."""
    L = result.num_layers
    layers = list(range(1, L + 1))
    fig = go.Figure()
    fig.add_scatter(x=layers, y=result.target_prob[:, index], name="probability", mode="lines+markers")
    fig.add_scatter(x=layers, y=result.target_rank[:, index], name="rank", mode="lines+markers", yaxis="y2",
                    line=dict(dash="dot"))
    first = int(result.first_top1()[index])
    fig.add_vline(x=first, line_dash="dash", line_color="#888",
                  annotation_text=plotly_text(f"final answer top-1 from layer {first}"))
    fig.update_layout(yaxis=dict(title="probability", range=[0, 1], tickformat=".0%"),
                      yaxis2=dict(title="rank (1 = top)", overlaying="y", side="right", type="log",
                                  autorange="reversed"),
                      xaxis=dict(title="layer"), legend=dict(orientation="h", y=-0.25))
    pos = int(result.positions[index])
    return _finish(fig, plotly_text(f"'{result.target_token}' after position {pos} "
                                    f"'{result.tokens[pos]}' across layers"), height=340)


# --- attribution ----------------------------------------------------------------------------------

def attribution_color(score: float) -> str:
    """Signed score in [-1, 1] -> background: green for positive, red for negative, white at 0;
    the hues of the Generate page's ``prob_color`` (``prob_color(1)`` / ``prob_color(0)``)."""
    s = max(-1.0, min(1.0, float(score)))
    hue = 120 if s >= 0 else 0
    light = 100 - 18 * abs(s) / 1.0  # 100% (white) .. 82% (prob_color's lightness)
    return f"hsl({hue}, {75 * abs(s):.0f}%, {light:.0f}%)"


def attribution_html(result: AttributionResult, method: str = "integrated") -> str:
    """The text, each token's background by its score (scaled by the largest |score|); hover shows
    the three methods' scores. Every token is HTML-escaped."""
    from ..interpret.attribution import (
        METHODS,  # the method names; computing them needs torch
    )

    scores = result.scores(method)
    top = float(np.abs(scores).max()) or 1.0
    spans = []
    for i, tok in enumerate(result.tokens):
        title = html.escape(
            f"#{i} {tok} — gradient×input {result.grad_x_input[i]:+.3f} · integrated {result.integrated[i]:+.3f}"
            f" · occlusion {result.occlusion_logit[i]:+.3f} logit ({result.occlusion_prob[i]:+.1%})", quote=True)
        spans.append(f'<span class="wb-tok" title="{title}" style="background:{attribution_color(scores[i] / top)};'
                     'border-radius:3px;padding:1px 2px;margin:1px;display:inline-block;'
                     f'font-family:ui-monospace,monospace;white-space:pre">{html.escape(tok)}</span>')
    target = html.escape(result.target_token)
    legend = (f'<div style="font-size:0.8em;color:#555;margin-top:6px">{html.escape(METHODS[method])} for '
              f'<b>{target}</b> (p = {result.target_prob:.1%}): <span style="background:{prob_color(1)};'
              f'padding:0 4px">pushes it up</span> <span style="background:{prob_color(0)};padding:0 4px">'
              'pushes it down</span>, colour scaled to the largest |score| — hover a token for all methods</div>')
    return f'<div class="wb-tokens" style="line-height:1.9">{"".join(spans)}</div>{legend}'


def attribution_figure(result: AttributionResult) -> go.Figure:
    """One bar group per token: the three methods, each scaled to its largest |score|."""
    from ..interpret.attribution import (
        METHODS,  # the method names; computing them needs torch
    )

    x = plotly_text([f"{i} {t}" for i, t in enumerate(result.tokens)])
    fig = go.Figure()
    for key, name in METHODS.items():
        s = result.scores(key)
        fig.add_bar(x=x, y=s / (float(np.abs(s).max()) or 1.0), name=name, customdata=s,
                    hovertemplate="%{x}<br>%{customdata:+.4f} logit<extra>" + name + "</extra>")
    fig.update_layout(barmode="group", yaxis=dict(title="score / max |score|", range=[-1.05, 1.05]),
                      legend=dict(orientation="h", y=-0.3))
    note = (f"IG: {result.steps} steps, baseline {result.baseline}, completeness error "
            f"{result.completeness_error:.3g} logit ({result.completeness_relative:.1%} of f(x) − f(baseline))")
    return _finish(fig, plotly_text(f"Which tokens drove '{result.target_token}'"), note, height=380)


def path_figure(result: AttributionResult) -> go.Figure:
    """The target's logit along the integrated-gradients path from the baseline (α = 0) to the
    input (α = 1), a marker at every node the integral used (the adaptive grid puts them where the
    line bends). The title states the completeness error."""
    fig = go.Figure()
    fig.add_scatter(x=result.path_alphas, y=result.path_logits, mode="lines+markers", name="f",
                    marker=dict(size=5), hovertemplate="α = %{x:.4f}<br>logit %{y:.3f}<extra></extra>")
    fig.update_xaxes(title="α (0 = baseline, 1 = the text)", range=[-0.02, 1.02])
    fig.update_yaxes(title=plotly_text(f"logit of '{result.target_token}'"))
    fig.update_layout(showlegend=False)
    note = (f"{result.steps} intervals; the scores sum to {float(result.integrated.sum()):.3f}, "
            f"f(x) − f(baseline) = {result.target_logit - result.baseline_logit:.3f}: completeness error "
            f"{result.completeness_relative:.2%}")
    return _finish(fig, f"Integrated gradients' path ({result.baseline} baseline → text)", note, height=320)


# --- base vs tuned --------------------------------------------------------------------------------

def changes_figure(comparison: Comparison) -> go.Figure:
    """Tokens whose next-token probability rose (green) and fell (red), tuned minus base."""
    rows = comparison.rose[::-1] + comparison.fell[::-1]
    fig = go.Figure(go.Bar(
        y=plotly_text([f"{c.token} ({c.id})" for c in rows]), x=[c.delta for c in rows], orientation="h",
        marker_color=[prob_color(1) if c.delta > 0 else prob_color(0) for c in rows],
        customdata=[[c.base_prob, c.tuned_prob] for c in rows],
        hovertemplate="%{y}<br>base %{customdata[0]:.1%} → tuned %{customdata[1]:.1%}<extra></extra>"))
    top = max((abs(c.delta) for c in rows), default=0.0)
    # ticks are about top / 5 apart: 0.35 % -> "+.2%", 3 % -> "+.1%", 30 % -> "+.0%"
    decimals = 0 if top <= 0 else min(4, max(0, 1 - int(np.floor(np.log10(top * 100)))))
    fig.update_xaxes(title="probability change (tuned − base)", tickformat=f"+.{decimals}%")
    return _finish(fig, f"Next token: KL(base ‖ tuned) = {comparison.kl:.4f} nats",
                   height=max(260, 60 + 22 * len(rows)))


def lens_difference(comparison: Comparison, max_columns: int = LENS_MAX_COLUMNS) -> go.Figure:
    """KL(base ‖ tuned) of the two lens distributions at every layer and position."""
    lens = comparison.base_lens
    kl = comparison.lens_kl
    P = kl.shape[1]
    cols = slice(max(0, P - max_columns), P)
    x = plotly_text([f"{p} {lens.tokens[p]}" for p in lens.positions[cols]])
    fig = go.Figure(go.Heatmap(z=kl[:, cols], x=x, y=list(range(1, kl.shape[0] + 1)), colorscale="Magma",
                               colorbar=dict(title="KL (nats)"),
                               hovertemplate="layer %{y}, after %{x}<br>KL %{z:.4f} nats<extra></extra>"))
    fig.update_xaxes(tickangle=-45)
    fig.update_yaxes(title="layer")
    note = f"Drawing the last {max_columns} of {P} positions." if P > max_columns else ""
    return _finish(fig, "Where the lens differs: KL(base ‖ tuned) per layer and position", note,
                   height=max(300, 60 + 22 * kl.shape[0]))


def head_change_figure(comparison: Comparison) -> go.Figure:
    """Layers × heads: how far each head's attention moved (mean JS distance over queries)."""
    z = comparison.head_change
    fig = go.Figure(go.Heatmap(z=z, x=list(range(z.shape[1])), y=list(range(z.shape[0])), colorscale="Viridis",
                               colorbar=dict(title="JS distance"),
                               hovertemplate="layer %{y}, head %{x}<br>JS distance %{z:.4f}<extra></extra>"))
    fig.update_xaxes(title="head")
    fig.update_yaxes(title="layer", autorange="reversed")
    L, H = z.shape
    flat = np.argsort(z.ravel())[::-1][:3]
    most = ", ".join(f"{i // H}.{i % H}" for i in flat)
    return _finish(fig, f"Attention heads that changed most (layer.head): {most}", height=max(260, 60 + 18 * L))
