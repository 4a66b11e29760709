"""Views of a ``GenerationResult``: tokens coloured by probability (HTML), a probability chart and
the top-k alternatives as a DataFrame. Pure functions of the result; no model is touched, so they
work the same in Streamlit (``st.html``) and Jupyter (``IPython.display.HTML``)."""
from __future__ import annotations

import html

from typing import TYPE_CHECKING

import pandas as pd
import plotly.graph_objects as go

if TYPE_CHECKING:
    from ..runtime.generation import GenerationResult


_SHOWN = {"\n": "↵", "\t": "⇥", "\r": "␍"}


def visible(token: str) -> str:
    """Token text as a person reads it: newlines, tabs and other control characters shown as
    symbols; a token of only spaces shows them as '·'; nothing is dropped."""
    out = "".join(
        _SHOWN.get(ch, ch if ch.isprintable() or ch == " " else f"\\x{ord(ch):02x}") for ch in token
    )
    if not token.strip(" "):
        out = out.replace(" ", "·")
    return out or "∅"


def prob_color(p: float) -> str:
    """Red (unlikely) to green (likely) background for probability ``p``."""
    hue = int(120 * max(0.0, min(1.0, p)))
    return f"hsl({hue}, 75%, 82%)"


def tokens_html(result: GenerationResult) -> str:
    """Each generated token as a span coloured by its probability; hover shows the top-k.
    All token text is HTML-escaped."""
    spans = []
    for i, t in enumerate(result.tokens):
        alts = " | ".join(f"{visible(a.token)} {a.prob:.1%}" for a in t.top)
        title = html.escape(f"#{i} p={t.prob:.1%} — top: {alts}", quote=True)
        text = html.escape(visible(t.token))
        br = "<br>" if "\n" in t.token else ""
        spans.append(
            f'<span class="wb-tok" title="{title}" style="background:{prob_color(t.prob)};'
            f'border-radius:3px;padding:1px 2px;margin:1px;display:inline-block;'
            f'font-family:ui-monospace,monospace;white-space:pre">{text}</span>{br}'
        )
    legend = (
        '<div style="font-size:0.8em;color:#555;margin-top:6px">colour = the model\'s probability '
        f'of each token: <span style="background:{prob_color(0.05)};padding:0 4px">5%</span> '
        f'<span style="background:{prob_color(0.5)};padding:0 4px">50%</span> '
        f'<span style="background:{prob_color(0.95)};padding:0 4px">95%</span> — hover a token '
        "for its alternatives</div>"
    )
    return f'<div class="wb-tokens" style="line-height:1.9">{"".join(spans)}</div>{legend}'


def alternatives_frame(result: GenerationResult, index: int) -> pd.DataFrame:
    """Top-k alternatives of generated token ``index``: rank, token, probability, chosen."""
    t = result.tokens[index]
    return pd.DataFrame(
        {
            "rank": range(1, len(t.top) + 1),
            "token": [visible(a.token) for a in t.top],
            "id": [a.id for a in t.top],
            "probability": [a.prob for a in t.top],
            "chosen": [a.id == t.id for a in t.top],
        }
    )


def tokens_frame(result: GenerationResult) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "step": range(len(result.tokens)),
            "token": [visible(t.token) for t in result.tokens],
            "id": [t.id for t in result.tokens],
            "probability": [t.prob for t in result.tokens],
            "top1": [visible(t.top[0].token) if t.top else "" for t in result.tokens],
            "top1_probability": [t.top[0].prob if t.top else 0.0 for t in result.tokens],
        }
    )


def probability_figure(result: GenerationResult) -> go.Figure:
    """Bar per generated token: its probability, with the most likely alternative on hover."""
    df = tokens_frame(result)
    fig = go.Figure(
        go.Bar(
            x=df["step"],
            y=df["probability"],
            marker_color=[prob_color(p) for p in df["probability"]],
            marker_line_color="#666",
            marker_line_width=0.5,
            customdata=df[["token", "top1", "top1_probability"]].values,
            hovertemplate="step %{x}: %{customdata[0]} p=%{y:.1%}<br>top-1: %{customdata[1]} "
            "%{customdata[2]:.1%}<extra></extra>",
        )
    )
    fig.update_layout(
        height=220, margin=dict(l=10, r=10, t=30, b=10), title="Probability of each generated token",
        yaxis=dict(range=[0, 1], tickformat=".0%"), xaxis_title="generated token",
    )
    return fig
