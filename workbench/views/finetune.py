"""Plotly figures of a fine-tuning job, drawn from its JSONL events only (no torch)."""
from __future__ import annotations

import plotly.graph_objects as go


def loss_figure(events: list[dict], title: str = "Loss") -> go.Figure:
    """Train loss per step and eval loss per evaluation (the last value of a step wins after a
    resume), and a marker at the last saved step."""
    train = {e["step"]: e["loss"] for e in events if e.get("event") == "step"}
    held = {e["step"]: e["eval_loss"] for e in events if e.get("event") == "eval"}
    fig = go.Figure()
    fig.add_scatter(x=sorted(train), y=[train[s] for s in sorted(train)], mode="lines", name="train loss")
    fig.add_scatter(x=sorted(held), y=[held[s] for s in sorted(held)], mode="lines+markers", name="eval loss")
    saved = [e["step"] for e in events if e.get("event") == "saved"]
    if saved:  # only the last: where Stop, a crash or Finish takes the adapter from (one per eval would crowd)
        last = saved[-1]
        fig.add_scatter(x=[last], y=[held.get(last, train.get(last))], mode="markers", name=f"last saved (step {last})",
                        marker={"symbol": "diamond-open", "size": 12})
    fig.update_layout(title=title, xaxis_title="step", yaxis_title="cross-entropy (nats/token)",
                      height=360, margin={"l": 40, "r": 10, "t": 40, "b": 40}, legend={"orientation": "h"})
    return fig
