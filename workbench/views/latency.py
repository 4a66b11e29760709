"""Plotly figures and a standalone HTML report for a ``workbench.latency.results.BenchResult``.

Figures take the result (numbers) and return ``plotly.graph_objects.Figure``; they never run
anything. ``html_report`` inlines plotly.js, so the file opens offline.
"""
from __future__ import annotations

import html
import math

import plotly.graph_objects as go

from ..latency.results import BenchResult

COLORS = {"torch": "#EE4C2C", "onnxruntime": "#1F77B4", "onnxruntime-fused": "#9467BD",
          "onnxruntime-int8": "#2CA02C"}


def _color(name: str) -> str | None:
    return COLORS.get(name)


def prefill_figure(result: BenchResult) -> go.Figure:
    """Prefill latency (p50, bars to p90) against prompt length, one line per backend."""
    fig = go.Figure()
    for r in result.results:
        lengths = sorted(r.prefill)
        p50 = [r.prefill[n].p50 for n in lengths]
        p90 = [r.prefill[n].p90 for n in lengths]
        fig.add_trace(go.Scatter(
            x=lengths, y=p50, name=r.backend, mode="lines+markers", line={"color": _color(r.backend)},
            error_y={"type": "data", "symmetric": False, "array": [b - a for a, b in zip(p50, p90)],
                     "arrayminus": [0] * len(p50)},
            hovertemplate="%{x} tokens: %{y:.1f} ms (p50)<extra>" + r.backend + "</extra>",
        ))
    fig.update_layout(
        title=f"Prefill latency vs prompt length — {result.model}",
        xaxis_title="prompt length (tokens)", yaxis_title="prefill latency, p50 (ms); bar to p90",
        legend_title="backend", template="plotly_white", height=420,
    )
    return fig


def decode_figure(result: BenchResult) -> go.Figure:
    """Per-token decode latency p50 per backend, with p90 as the error bar."""
    names = [r.backend for r in result.results]
    p50 = [r.decode.p50 for r in result.results]
    p90 = [r.decode.p90 for r in result.results]
    fig = go.Figure(go.Bar(
        x=names, y=p50, marker_color=[_color(n) for n in names],
        error_y={"type": "data", "symmetric": False, "array": [b - a for a, b in zip(p50, p90)],
                 "arrayminus": [0] * len(p50)},
        hovertemplate="%{x}: %{y:.2f} ms/token (p50)<extra></extra>",
    ))
    # the values go under the bars: above them they would collide with the p90 whiskers
    fig.update_xaxes(tickmode="array", tickvals=names,
                     ticktext=[f"{n}<br><b>{v:.1f} ms</b>" for n, v in zip(names, p50)])
    fig.update_layout(
        title={"text": f"Decode latency per token (context {result.config.decode_prompt_length}) — {result.model}",
               "subtitle": {"text": result.machine}},
        yaxis_title="ms per token, p50; bar to p90", template="plotly_white", height=400,
    )
    return fig


def speedup_figure(result: BenchResult, baseline: str = "torch") -> go.Figure:
    """Decode speed-up over ``baseline`` (baseline p50 / backend p50); 1.0 drawn as a line."""
    summary = result.summary(baseline)
    names = list(summary["backend"])
    values = [v if not math.isnan(v) else 0.0 for v in summary["speedup"]]
    fig = go.Figure(go.Bar(
        x=names, y=values, marker_color=[_color(n) for n in names],
        text=[f"{v:.2f}×" for v in values], textposition="outside",
        hovertemplate="%{x}: %{y:.2f}× " + baseline + "<extra></extra>",
    ))
    fig.add_hline(y=1.0, line_dash="dot", line_color="gray")
    fig.update_layout(
        title=f"Decode speed-up over {baseline} (higher is faster)",
        yaxis_title=f"{baseline} p50 / backend p50", template="plotly_white", height=400,
    )
    return fig


def html_report(result: BenchResult) -> str:
    """A standalone HTML page: the machine, parity verdicts, backends that failed, summary table,
    the three charts and the environment."""
    figs = [prefill_figure(result), decode_figure(result), speedup_figure(result)]
    charts = [figs[0].to_html(full_html=False, include_plotlyjs=True)]
    charts += [f.to_html(full_html=False, include_plotlyjs=False) for f in figs[1:]]
    summary = result.summary().to_html(index=False, float_format=lambda v: f"{v:.3g}", border=0)
    frame = result.frame().to_html(index=False, float_format=lambda v: f"{v:.3g}", border=0)
    env = result.env
    env_rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in env.items()
    )
    parity = "".join(
        f"<li class='{'pass' if p.passed else 'fail'}'>{html.escape(name)}: {html.escape(p.verdict)}</li>"
        for name, p in result.parity.items()
    ) or "<li>not checked</li>"
    failures = "".join(
        f"<li class='fail'>{html.escape(name)}: {html.escape(str(f.get('signal') or 'failed'))} during "
        f"{html.escape(str(f.get('during')))}: {html.escape(str(f.get('error', '')))}</li>"
        for name, f in result.failures.items()
    )
    failed = f"<h2>Backends that failed</h2><ul>{failures}</ul>" if failures else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Latency report — {html.escape(result.model)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} th, td {{ padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: left; }}
.pass {{ color: #137333; }} .fail {{ color: #b3261e; }}
</style></head><body>
<h1>Latency report: {html.escape(result.model)}</h1>
<p class="machine">Measured on <b>{html.escape(result.machine)}</b>.</p>
<p>{result.config.new_tokens} greedy tokens, prompt lengths {list(result.config.prompt_lengths)},
decode context {result.config.decode_prompt_length}; at least {result.config.min_repeats} repeats and
{result.config.min_time_s:g} s per measurement after {result.config.warmup} warm-up run(s).</p>
<h2>Parity with torch</h2><ul>{parity}</ul>
{failed}
<h2>Summary</h2>{summary}
{''.join(charts)}
<h2>All measurements (ms)</h2>{frame}
<h2>Environment</h2><table>{env_rows}</table>
</body></html>"""
