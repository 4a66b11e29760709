"""Plotly figures of attention results. Every builder takes data from ``workbench.attention``
and returns a ``plotly.graph_objects.Figure``; nothing here runs a model.

Axes put queries down (first token at the top) and keys across. Axis categories are
``"position token"`` so repeated tokens stay apart. Maps longer than a builder's limit are
block-averaged (``downsample``) or drawn as top-k edges (``top_k_edges``); the figure title
then says what was reduced, and so does ``figure.layout.meta["note"]``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from ..attention.results import AttentionResult, GenerationAttention
from ..attention.summaries import HeadStats, downsample, mean_over_heads, position_labels, rollout, top_k_edges

COLORSCALE = "Viridis"
GRID_MAX_TOKENS = 48  # per cell of the grid
ZOOM_MAX_TOKENS = 128  # a single head with every token labelled
ZOOM_TOP_K = 5
HOVER = "query %{y}<br>key %{x}<br>weight %{z:.3f}<extra>%{meta}</extra>"


def plotly_text(text):
    """Token text as plotly shows it literally. Plotly reads ``<b>``, ``<br>``, ``<a href>``… in
    labels, titles and hover text as markup and drops tags it does not know, so ``<``, ``>`` and
    ``&`` are written as entities (plotly turns them back into the characters). Takes a string or
    a list of strings."""
    if not isinstance(text, str):
        return [plotly_text(t) for t in text]
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _finish(fig: go.Figure, title: str, note: str, height: int) -> go.Figure:
    text = title + (f"<br><sup>{note}</sup>" if note else "")
    fig.update_layout(title=dict(text=text, x=0, font=dict(size=15)), height=height,
                      margin=dict(l=10, r=10, t=70 if note else 45, b=10), meta={"note": note})
    return fig


def _reverse_y(fig: go.Figure) -> None:
    fig.update_yaxes(autorange="reversed")


def colour_max(matrix: np.ndarray) -> float:
    """Top of the colour scale: the largest weight of any query but the first, which can only
    attend to itself (weight 1) and would wash out the rest of the map."""
    body = matrix[..., 1:, :] if matrix.shape[-2] > 1 else matrix
    return float(body.max()) or 1.0


def default_layers(result: AttentionResult, count: int = 4) -> list[int]:
    """Evenly spaced kept layers, first and last included."""
    layers = list(result.layers)
    if len(layers) <= count:
        return layers
    idx = np.linspace(0, len(layers) - 1, count).round().astype(int)
    return [layers[i] for i in sorted(set(idx.tolist()))]


def heatmap_grid(
    result: AttentionResult,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    max_tokens: int = GRID_MAX_TOKENS,
) -> go.Figure:
    """Rows = layers, columns = heads, one shared colour scale (0 to the largest weight shown,
    query 0 aside: see ``colour_max``).
    Hover shows query token, key token and weight. Built from axes of one figure (no
    ``make_subplots``) so a 30 x 9 grid stays quick to build."""
    layers = default_layers(result) if layers is None else list(layers)
    heads = list(range(result.num_heads)) if heads is None else list(heads)
    nr, nc = len(layers), len(heads)
    fig = go.Figure()
    gap_x, gap_y = 0.012, 0.5 / max(nr * 30, 1) + 0.02
    w = (1 - gap_x * (nc - 1)) / nc
    h = (1 - gap_y * (nr - 1)) / nr
    note, zmax = "", 0.0
    cells = []
    for r, layer in enumerate(layers):
        for c, head in enumerate(heads):
            red = downsample(result.head(layer, head), result.tokens, max_tokens)
            note = note or red.note
            zmax = max(zmax, colour_max(red.matrix))
            cells.append((r, c, layer, head, red))
    annotations = []
    for r, c, layer, head, red in cells:
        i = r * nc + c + 1
        xa, ya = ("x", "y") if i == 1 else (f"x{i}", f"y{i}")
        fig.add_trace(go.Heatmap(
            z=red.matrix, x=plotly_text(red.col_labels), y=plotly_text(red.row_labels), coloraxis="coloraxis",
            hovertemplate=HOVER, meta=f"layer {layer} head {head}", xaxis=xa, yaxis=ya,
        ))
        x0 = c * (w + gap_x)
        y1 = 1 - r * (h + gap_y)
        key = "" if i == 1 else str(i)
        bare = dict(showticklabels=False, showgrid=False, ticks="", zeroline=False)
        fig.layout[f"xaxis{key}"] = dict(domain=[x0, x0 + w], anchor=ya, **bare)
        fig.layout[f"yaxis{key}"] = dict(domain=[y1 - h, y1], anchor=xa, autorange="reversed", **bare)
        if r == 0:
            annotations.append(dict(text=f"head {head}", x=x0 + w / 2, y=1.0, xref="paper", yref="paper",
                                    yanchor="bottom", showarrow=False, font=dict(size=11)))
        if c == 0:
            annotations.append(dict(text=f"L{layer} {'sliding' if result.kind_label(layer) != 'full' else 'full'}",
                                    x=-0.005, y=y1 - h / 2, xref="paper", yref="paper", xanchor="right",
                                    textangle=-90, showarrow=False, font=dict(size=11)))
    fig.update_layout(coloraxis=dict(colorscale=COLORSCALE, cmin=0, cmax=zmax or 1,
                                     colorbar=dict(title="weight", thickness=12)),
                      annotations=annotations, plot_bgcolor="white")
    cell_px = min(240, max(110, 1100 / nc))
    fig = _finish(fig, f"Attention per head — {result.model}", note, int(max(300, nr * cell_px + 90)))
    fig.update_layout(margin=dict(l=34))
    return fig


def head_heatmap(result: AttentionResult, layer: int, head: int,
                 max_tokens: int = ZOOM_MAX_TOKENS, top_k: int = ZOOM_TOP_K) -> go.Figure:
    """One head with every token labelled; longer texts as the ``top_k`` strongest keys per query."""
    matrix = result.head(layer, head)
    title = f"Layer {layer} ({result.kind_label(layer)}), head {head}"
    meta_text = f"layer {layer} head {head}"
    n = result.num_tokens
    if n <= max_tokens:
        labels = plotly_text(position_labels(result.tokens))
        fig = go.Figure(go.Heatmap(z=matrix, x=labels, y=labels, colorscale=COLORSCALE, zmin=0,
                                   zmax=colour_max(matrix), hovertemplate=HOVER, meta=meta_text,
                                   colorbar=dict(title="weight")))
        fig.update_xaxes(tickangle=-60, tickfont=dict(size=10), type="category")
        fig.update_yaxes(tickfont=dict(size=10), type="category")
        _reverse_y(fig)
        side = min(900, max(420, 14 * n + 160))
        return _finish(fig, title, "", side)
    edges = top_k_edges(matrix, top_k)
    labels = plotly_text(position_labels(result.tokens))
    custom = np.array([[labels[q], labels[k]] for q, k in zip(edges.query, edges.key)], dtype=object)
    fig = go.Figure(go.Scattergl(
        x=edges.key, y=edges.query, mode="markers", customdata=custom,
        marker=dict(color=edges.weight, colorscale=COLORSCALE, cmin=0,
                    cmax=float(edges.weight[edges.query > 0].max(initial=0)) or 1.0,
                    size=np.clip(3 + 9 * edges.weight, 3, 12),
                    colorbar=dict(title="weight")),
        hovertemplate="query %{customdata[0]}<br>key %{customdata[1]}<br>weight %{marker.color:.3f}"
                      f"<extra>{meta_text}</extra>",
    ))
    fig.update_xaxes(title="key position", range=[-1, n])
    fig.update_yaxes(title="query position", range=[n, -1])
    return _finish(fig, title, edges.note, 700)


def matrix_heatmap(matrix: np.ndarray, tokens: Sequence[str], title: str, *, hover_name: str = "",
                   max_tokens: int = ZOOM_MAX_TOKENS, colorbar: str = "weight") -> go.Figure:
    """A labelled ``(T, T)`` map (mean over heads, rollout), block-averaged past ``max_tokens``."""
    red = downsample(matrix, tokens, max_tokens)
    fig = go.Figure(go.Heatmap(z=red.matrix, x=plotly_text(red.col_labels), y=plotly_text(red.row_labels),
                               colorscale=COLORSCALE,
                               zmin=0, zmax=colour_max(red.matrix), hovertemplate=HOVER, meta=hover_name or title,
                               colorbar=dict(title=colorbar)))
    fig.update_xaxes(tickangle=-60, tickfont=dict(size=10), type="category")
    fig.update_yaxes(tickfont=dict(size=10), type="category")
    _reverse_y(fig)
    n = len(red.row_labels)
    return _finish(fig, title, red.note, min(900, max(420, 14 * n + 160)))


def mean_heatmap(result: AttentionResult, layer: int) -> go.Figure:
    matrix = mean_over_heads(result.weights[[result.index(layer)]])[0]
    return matrix_heatmap(matrix, result.tokens, f"Layer {layer}: mean over {result.num_heads} heads",
                          hover_name=f"layer {layer} mean")


def rollout_heatmap(result: AttentionResult, residual: float = 0.5) -> go.Figure:
    span = f"layers {result.layers[0]}–{result.layers[-1]}" if len(result.layers) > 1 else f"layer {result.layers[0]}"
    return matrix_heatmap(rollout(result.weights, residual), result.tokens,
                          f"Attention rollout over {span} (residual {residual:g})", hover_name="rollout",
                          colorbar="share")


STAT_TITLES = {
    "entropy": "Entropy (bits): low = focused",
    "first_token": "Weight on the first token",
    "prev_token": "Weight on the previous token",
}


def head_stats_figure(stats: HeadStats, metric: str = "entropy") -> go.Figure:
    """Layers x heads map of one head statistic (``HeadStats.METRICS``)."""
    if metric not in STAT_TITLES:
        raise ValueError(f"metric must be one of {list(STAT_TITLES)}")
    z = getattr(stats, metric)
    heads = [f"head {h}" for h in range(z.shape[1])]
    layers = [f"layer {x}" for x in stats.layers]
    fig = go.Figure(go.Heatmap(
        z=z, x=heads, y=layers, colorscale=COLORSCALE,
        zmin=0, zmax=None if metric == "entropy" else 1,
        hovertemplate="%{y}, %{x}<br>" + metric.replace("_", " ") + " %{z:.3f}<extra></extra>",
    ))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category")
    return _finish(fig, STAT_TITLES[metric], "", max(300, 18 * len(layers) + 120))


def generation_step_data(gen: GenerationAttention, step: int, layer: int) -> dict:
    """What the step view draws: ``matrix (heads, keys)``, key labels, the token predicted."""
    matrix = gen.step(step, layer)
    keys = position_labels(gen.tokens[: matrix.shape[-1]])
    return {
        "matrix": matrix,
        "keys": keys,
        "predicted": gen.tokens[gen.prompt_len + step],
        "query": keys[-1],
        "prompt_len": gen.prompt_len,
    }


def generation_step_figure(gen: GenerationAttention, step: int, layer: int) -> go.Figure:
    """One generated token: each head's attention over the context when it was predicted."""
    data = generation_step_data(gen, step, layer)
    heads = [f"head {h}" for h in range(data["matrix"].shape[0])]
    fig = go.Figure(go.Heatmap(
        z=data["matrix"], x=plotly_text(data["keys"]), y=heads, colorscale=COLORSCALE, zmin=0,
        hovertemplate="%{y}<br>key %{x}<br>weight %{z:.3f}<extra></extra>", colorbar=dict(title="weight"),
    ))
    fig.update_xaxes(type="category", tickangle=-60, tickfont=dict(size=10))
    fig.update_yaxes(type="category", autorange="reversed")
    if gen.prompt_len < len(data["keys"]):
        fig.add_vline(x=gen.prompt_len - 0.5, line=dict(color="white", width=2, dash="dot"))
    kind = gen.layer_kinds[layer] if layer < len(gen.layer_kinds) else "full"
    title = (f"Step {step + 1}/{gen.steps}: predicting '{plotly_text(data['predicted'])}' — layer {layer} ({kind}); "
             "dotted line: end of the prompt")
    return _finish(fig, title, "", 120 + 28 * len(heads) + 80)


def ablation_figure(comparison) -> go.Figure:
    """Next-token probabilities with all heads and with the chosen heads switched off, for
    every token in either top-k."""
    labels = plotly_text([f"{tok} ({i})" for tok, i, _, _ in comparison.rows])
    fig = go.Figure([
        go.Bar(name="all heads", x=labels, y=[r[2] for r in comparison.rows]),
        go.Bar(name="heads off", x=labels, y=[r[3] for r in comparison.rows]),
    ])
    heads = ", ".join(f"{a}.{b}" for a, b in comparison.heads) or "none"
    fig.update_layout(barmode="group", yaxis_title="probability",
                      legend=dict(orientation="h", y=1.0, yanchor="bottom", x=1, xanchor="right"))
    fig.update_xaxes(type="category")
    fig = _finish(fig, f"Next token with heads {heads} switched off (layer.head)", "", 440)
    fig.update_layout(margin=dict(t=80))
    return fig


SCORE_MAX_KEYS = 48


def score_figure(bd, max_keys: int = SCORE_MAX_KEYS) -> go.Figure:
    """A ``ScoreBreakdown`` as two bar rows over the keys: pre-softmax scores (top) and the
    softmax weights (bottom). Masked keys are left out; past ``max_keys`` visible keys only the
    ``max_keys`` heaviest are drawn (in position order) and the title says so."""
    from plotly.subplots import make_subplots

    keys = np.flatnonzero(bd.visible)
    note = ""
    if len(keys) > max_keys:
        top = keys[np.argsort(-bd.probabilities[keys], kind="stable")[:max_keys]]
        share = float(bd.probabilities[top].sum())
        note = (f"{len(keys)} visible keys: showing the {max_keys} with the most weight "
                f"({share:.0%} of this row's attention)")
        keys = np.sort(top)
    labels = plotly_text([f"{k} {bd.tokens[k]}" for k in keys])
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("score = q·k × scale (before softmax)", "weight = softmax(score)"))
    fig.add_trace(go.Bar(x=labels, y=bd.scores[keys], marker_color="#7f7f7f",
                         hovertemplate="key %{x}<br>score %{y:.3f}<extra></extra>", name="score"), 1, 1)
    fig.add_trace(go.Bar(x=labels, y=bd.probabilities[keys], marker_color="#440154",
                         hovertemplate="key %{x}<br>weight %{y:.3f}<extra></extra>", name="weight"), 2, 1)
    fig.update_xaxes(type="category", tickangle=-60, tickfont=dict(size=10))
    fig.update_yaxes(title_text="score", row=1, col=1)
    fig.update_yaxes(title_text="weight", rangemode="tozero", row=2, col=1)
    fig.update_layout(showlegend=False, bargap=0.15)
    title = (f"Layer {bd.layer}, head {bd.head}: query {bd.query} '{plotly_text(bd.tokens[bd.query])}' "
             f"over keys 0–{bd.query}")
    fig = _finish(fig, title, note, 520)
    fig.update_layout(margin=dict(t=90 if note else 70))
    return fig
