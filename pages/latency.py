"""Latency page: export a store model to ONNX (once, cached), check ONNX Runtime against torch,
and time both the way benchmark tools do; charts and reports to download.

Layout only: exporting is ``workbench.onnx``, backends ``workbench.runtime.backends``, timing
and parity ``workbench.latency``, figures ``workbench.views.latency``."""
import json

import pandas as pd
import streamlit as st

from pages._shared import Keys, get_model, get_store, show_error, sidebar
from workbench.data.install import catalog as dataset_catalog
from workbench.errors import WorkbenchError
from workbench.latency.harness import run_benchmark
from workbench.latency.results import BenchConfig
from workbench.latency.speeds import measured_speeds, record_speeds
from workbench.onnx import cached_export, pending_export_seconds
from workbench.quality.results import measured_quality
from workbench.runtime.backends import (
    BACKEND_VARIANTS,
    LLAMACPP,
    TORCH,
    available_backends,
    llamacpp_installed,
    make_backend,
)
from workbench.runtime.backends.hints import INSTALL_HINT
from workbench.runtime.backends.isolated import (
    BackendCrashedError,
    make_any_backend,
    native_backends,
)
from workbench.views import latency as plots

LENGTHS = (16, 32, 64, 128, 256, 512)
EFFORT = {  # name -> (min repeats, min seconds per measurement)
    "Quick": (3, 0.5),
    "Thorough": (5, 2.0),
}

sel = sidebar("onnx")
st.title("Latency")
st.caption(
    "torch eager against ONNX Runtime on this machine: the model is exported to ONNX once (cached), "
    "checked against torch, then timed with warm-up and repeats. Other work on the machine moves the "
    "absolute numbers; compare backends within one run."
)
if sel.model_id is None:
    st.stop()

store = get_store()
card = store.card(sel.model_id)
choices = available_backends(card)
choices += [n for n in native_backends(card) if n not in choices]  # native backends registered beside them
with st.container(border=True, key="latency_settings"):
    c1, c2 = st.columns([3, 2])
    backends = c1.multiselect(
        "Backends", choices, default=[b for b in choices if b in (TORCH, "onnxruntime", "onnxruntime-fused")],
        key="lat_backends",
        help="torch is the reference for parity and speed-up. onnxruntime-fused is the fp32 graph with "
        "rotary, norms and q/k/v fused into ONNX Runtime's own ops. onnxruntime-q4 computes with the "
        "model's own GGUF blocks (4-bit MatMulNBits, the same weights as fp32), q4a8 also quantizes "
        "activations to int8; int8 re-quantizes every weight. llamacpp runs the same GGUF in llama.cpp.",
    )
    if LLAMACPP in choices and not llamacpp_installed():
        c1.caption(f"llamacpp needs the optional llama-cpp-python package: `{INSTALL_HINT}`.")
    effort = c2.segmented_control("Effort", list(EFFORT), default="Quick", key="lat_effort") or "Quick"
    room = card.context_length
    usable = [n for n in LENGTHS if n < room]
    c3, c4 = st.columns([3, 2])
    standard = [n for n in (16, 128, 512) if n in usable]
    lengths = c3.multiselect(
        "Prompt lengths (tokens)", usable, default=standard if len(standard) > 1 else usable[:3],
        key="lat_lengths", help="Prefill latency is measured at each length.",
    )
    new_tokens = c4.number_input(
        "New tokens", min_value=2, max_value=256, value=32 if room <= 256 else 64, step=1, key="lat_new_tokens",
        help="Greedy, exactly this many (end-of-text is ignored).",
    )
    pending = [b for b in backends if b in BACKEND_VARIANTS
               and cached_export(store, card.id, BACKEND_VARIANTS[b], verify=False) is None]
    if pending:
        minutes = pending_export_seconds(store, card.id, [BACKEND_VARIANTS[b] for b in pending]) / 60
        st.caption(f"First run exports {', '.join(pending)} to ONNX: about {max(minutes, 0.2):.1f} min here, then cached.")
    run = st.button("Export, check and time", type="primary", key="lat_run",
                    disabled=not backends or not lengths)

if run:
    repeats, min_time = EFFORT[effort]
    longest = max(lengths)
    context = min(128, longest)
    config = BenchConfig(
        prompt_lengths=tuple(sorted(lengths)), new_tokens=int(min(new_tokens, room - max(longest, context))),
        decode_prompt_length=context, min_repeats=repeats, min_time_s=min_time, device=sel.device,
        threads=sel.threads,
    )
    done = False
    with st.status(f"Timing {card.name}", expanded=True) as status:
        bar = st.progress(0.0, text="loading the model…")
        try:
            model = get_model(sel.model_id, sel.device)
            ready, notes, failures = {}, [], {}
            for i, name in enumerate(backends):
                lo, hi = i / len(backends) * 0.5, (i + 1) / len(backends) * 0.5

                def progress(f, msg, lo=lo, hi=hi, name=name):
                    bar.progress(min(max(lo + (hi - lo) * f, 0.0), 1.0), text=f"{name}: {msg}")

                try:  # native backends run in their own process: a crash there fails only that one
                    ready[name] = make_any_backend(model, name, progress=progress, device=sel.device,
                                                   threads=sel.threads, store=store)
                except BackendCrashedError as err:
                    failures[name] = {**err.to_json(), "during": "loading"}
                    continue
                if getattr(ready[name], "note", ""):
                    notes.append(f"{name}: {ready[name].note}")
            if TORCH not in ready:  # parity and speed-up need the reference
                ready = {TORCH: make_backend(model, TORCH), **ready}
            result = run_benchmark(
                model, ready, config,
                progress=lambda f, msg: bar.progress(min(0.5 + 0.5 * f, 1.0), text=msg), failures=failures,
            )
            record_speeds(store, result)
            st.session_state[Keys.latency] = (result, notes)
            status.update(label=f"Timed {card.name}", state="complete", expanded=False)
            done = True
        except WorkbenchError as err:
            status.update(label="Failed", state="error")
            show_error(err)
    if done:
        st.rerun()  # redraw the settings (the export is cached now) above the fresh result

with st.container(border=True, key="latency_quality"):
    st.markdown("#### Perplexity per variant")
    st.caption(
        "Held-out perplexity of each backend on a store dataset (strided sliding windows), and the mean KL "
        "divergence of its next-token distributions from torch fp32: quantization drift as a change in quality."
    )
    q1, q2, q3 = st.columns([2, 2, 1])
    dataset_ids = [c.id for c in dataset_catalog(store)]
    q_dataset = q1.selectbox("Dataset", dataset_ids, key="lat_ppl_dataset")
    q_tokens = q2.number_input("Held-out tokens", min_value=32, max_value=16384, value=512, step=64,
                               key="lat_ppl_tokens", help="ONNX Runtime scores them one at a time through its KV cache.")
    if q3.button("Measure perplexity", key="lat_ppl_run", disabled=not backends or not q_dataset):
        from workbench.data.loading import load_dataset
        from workbench.quality.evaluation import perplexity
        from workbench.quality.results import record_quality

        bar = st.progress(0.0, text="loading…")
        try:
            model = get_model(sel.model_id, sel.device)
            data = load_dataset(store, q_dataset)
            for i, name in enumerate(backends):
                def tick(f, msg, i=i):
                    bar.progress(min((i + f) / len(backends), 1.0), text=msg)

                record_quality(store, perplexity(model, data, name, window=min(256, card.context_length),
                                                 max_tokens=int(q_tokens), progress=tick, store=store))
            bar.empty()
        except WorkbenchError as err:
            show_error(err)
    stored = measured_quality(store, card.id, q_dataset) if q_dataset else {}
    if stored:
        speeds = measured_speeds(store, card.id)
        ref = stored.get(TORCH, {}).get("perplexity")
        st.dataframe(pd.DataFrame([{
            "backend": name, "perplexity": r["perplexity"],
            "Δ vs torch": (r["perplexity"] - ref) if ref else None,
            # torch is the reference: no divergence from itself
            "mean KLD": r.get("kld_mean", 0.0 if name == TORCH else None),
            "same top token": r.get("top1_agreement", 1.0 if name == TORCH else None),
            "tokens": r["tokens"], "window": r["window"],
            "stride": r["stride"], "tokens/s": speeds.get(name),
        } for name, r in stored.items()]), hide_index=True, key="latency_quality_table",
            column_config={"perplexity": st.column_config.NumberColumn(format="%.3f"),
                           "Δ vs torch": st.column_config.NumberColumn(format="%+.4f"),
                           "mean KLD": st.column_config.NumberColumn(format="%.2e"),
                           "same top token": st.column_config.NumberColumn(format="percent"),
                           "tokens/s": st.column_config.NumberColumn(format="%.1f")})

saved = st.session_state.get(Keys.latency)
if saved is None or saved[0].model != card.id:
    st.info("Pick backends and press **Export, check and time**.")
    st.stop()
result, notes = saved
for note in notes:
    st.info(note)
st.caption(f"Measured on **{result.machine}**. The order of backends changes between machines: compare "
           "numbers from the same machine.")
with st.container(key="latency_failures"):
    for name, failure in result.failures.items():
        how = f"its process died with **{failure['signal']}**" if failure.get("signal") else "it failed"
        st.error(f"**{name}** — {how} during {failure.get('during')}; the other backends' results stand. "
                 f"{failure.get('error', '')}")

st.subheader("Parity with torch")
with st.container(key="latency_parity"):
    if not result.parity:
        st.caption("Only torch was timed: nothing to compare.")
    for name, report in result.parity.items():
        # an exact graph that fails is an error; a quantized one that drifts is expected, and shown
        show = st.success if report.passed else st.error if report.threshold.judge_logits else st.warning
        show(f"**{name}** — {report.verdict}")
        if not report.passed and report.first_mismatch is not None:
            st.caption(f"{name} first chose a different token at step {report.first_mismatch + 1}.")

st.subheader("Speed")
summary = result.summary()
if not result.quality and q_dataset:  # perplexity measured in the section above, for this model
    for name, r in measured_quality(store, card.id, q_dataset).items():
        summary.loc[summary.backend == name, "perplexity"] = r["perplexity"]
        summary.loc[summary.backend == name, "kld_mean"] = r.get("kld_mean") or 0.0
ceiling = result.bandwidth_gb_s
if ceiling == ceiling:  # measured in this run
    st.caption(f"Memory read ceiling measured in this run: {ceiling:.1f} GB/s with "
               f"{result.env['memory_read']['threads']} threads. A decode step reads every weight once, so "
               "weight MB per token ÷ this bounds how fast any backend can decode.")
with st.container(key="latency_metrics"):
    per_row = 4  # more columns than this cut the numbers short
    rows = list(summary.itertuples())
    for start in range(0, len(rows), per_row):
        for col, row in zip(st.columns(per_row), rows[start:start + per_row]):
            col.metric(
                row.backend, f"{row.decode_p50_ms:.1f} ms",
                delta=None if row.backend == TORCH else f"{row.speedup:.2f}× torch",
                delta_color="normal" if row.speedup >= 1 else "inverse",
                help=f"p50 decode time per token at context {result.config.decode_prompt_length}; "
                f"{row.tokens_per_s:.1f} tok/s end to end",
            )
st.dataframe(
    summary, hide_index=True, key="latency_summary",
    column_config={
        "decode_p50_ms": st.column_config.NumberColumn("decode p50 (ms)", format="%.2f"),
        "decode_p90_ms": st.column_config.NumberColumn("decode p90 (ms)", format="%.2f"),
        "speedup": st.column_config.NumberColumn("speed-up", format="%.2f×"),
        "ttft_p50_ms": st.column_config.NumberColumn("TTFT p50 (ms)", format="%.1f"),
        "tokens_per_s": st.column_config.NumberColumn("tokens/s", format="%.1f"),
        "prefill_p50_ms": st.column_config.NumberColumn(f"prefill {max(result.config.prompt_lengths)} (ms)", format="%.1f"),
        "weight_mb_per_token": st.column_config.NumberColumn("weight MB / token", format="%.1f"),
        "weights_gb_per_s": st.column_config.NumberColumn("weights GB/s", format="%.2f"),
        "bandwidth_share": st.column_config.NumberColumn("share of ceiling", format="percent",
                                                         help="weights GB/s ÷ the memory read ceiling measured in this run"),
        "perplexity": st.column_config.NumberColumn("perplexity", format="%.3f",
                                                    help="held-out, from the Perplexity section above"),
        "kld_mean": st.column_config.NumberColumn("mean KLD", format="%.2e",
                                                  help="mean KL divergence from torch fp32 per position"),
        "peak_rss_mb": st.column_config.NumberColumn("peak RSS (MB)", format="%.0f"),
        "max_abs_diff": st.column_config.NumberColumn("max |Δlogits|", format="%.2e"),
        "tolerance": st.column_config.NumberColumn("tolerance", format="%.2e",
                                                   help="8× this machine's fp32 noise floor, measured in this run"),
    },
)
with st.container(key="latency_charts"):
    st.plotly_chart(plots.prefill_figure(result), key="lat_prefill_chart")
    c1, c2 = st.columns(2)
    c1.plotly_chart(plots.decode_figure(result), key="lat_decode_chart")
    c2.plotly_chart(plots.speedup_figure(result), key="lat_speedup_chart")

with st.expander("What these numbers mean: prefill, decode, the KV cache, parity, drift"):
    rows = {r.backend: r for r in summary.itertuples()}
    ref = rows.get(TORCH)
    st.markdown(
        """
**Prefill** runs the whole prompt through the network in one pass: its cost grows with the
prompt length (the curve above), and it is mostly arithmetic, so more cores help.
**Decode** then produces one token per pass. Each pass reads every weight of the model once but
does little arithmetic per weight, so on a CPU it waits on memory: the "weights GB/s" column is
the bytes of weights one step reads divided by the decode time, and "share of ceiling" compares it
with this machine's memory read bandwidth, measured in the same run (machines differ a lot).
**The KV cache** is why decode is cheap: the keys and values of every earlier token are kept
from the passes that made them, so a new token computes only its own and attends to the stored
ones, instead of re-running the whole text each step. The exported ONNX graph takes the cache in
and hands the updated cache out, so ONNX Runtime decodes the same way.

**Parity** asks whether ONNX Runtime computes the same function as torch: the largest absolute
difference between their logits (on the prompt and after cached decode steps) and how many
greedy tokens agree. fp32 graphs differ only by the order of floating-point sums, and how far
that reaches depends on the model and the machine, so the bar is measured in the same run: torch
against itself computed another way (one pass without the KV cache, on one thread) gives this
machine's **fp32 noise floor**; an fp32 graph passes with max |Δlogits| ≤ 8× that floor and every
greedy token equal (the verdicts above state both numbers).
**Fused ops**: the fused graph computes the same function with fewer, larger kernels: each
layer's rotary embedding, residual-add + RMS norm, and q/k/v projections (one matrix product
instead of three) become single ONNX Runtime ops, so less time goes to launching small ops and
re-reading activations. Same weights, so it reads as many bytes per token as fp32.
**Quantization drift**: int8 stores each weight in 8 bits with a scale, so it reads 4× fewer
bytes per token (faster decode) but every logit moves a little; once the top two candidates
swap, greedy text takes another path and never comes back. That is why int8 is shown with its
drift next to its speed, never alone.
**GGUF blocks (q4, q4a8, llamacpp)**: the store's weights come from a GGUF file whose blocks store
32 weights as 4-bit codes with a scale (and an offset); the fp32 weights are those blocks decoded.
The q4 graph hands ONNX Runtime the blocks themselves (`MatMulNBits`), so it reads about 4× fewer
bytes per token yet computes with exactly the fp32 weights: it is judged like fp32. q4a8 also
rounds each block of activations to 8 bits before the dot product, as llama.cpp does: faster on
most CPUs, and it drifts, so it is judged on tokens, with its drift shown.
"""
        + (
            f"\nIn this run torch decoded at {ref.decode_p50_ms:.1f} ms/token ({ref.weights_gb_per_s:.1f} GB/s of weights)"
            + "".join(
                f"; {r.backend} at {r.decode_p50_ms:.1f} ms/token ({r.weights_gb_per_s:.1f} GB/s), "
                f"max |Δlogits| {r.max_abs_diff:.1e}"
                + (f" (tolerance {r.tolerance:.1e})" if r.tolerance == r.tolerance else "")
                for r in rows.values() if r.backend != TORCH
            )
            + "."
            if ref is not None else ""
        )
    )

with st.expander("All measurements and the environment"):
    st.dataframe(result.frame(), hide_index=True, key="latency_frame")
    st.json(result.env, expanded=False)

stem = f"latency-{result.model}"
d1, d2, d3 = st.columns(3)
d1.download_button("CSV", result.frame().to_csv(index=False), f"{stem}.csv", "text/csv", key="lat_csv")
d2.download_button("JSON", json.dumps(result.to_json(), indent=2), f"{stem}.json", "application/json", key="lat_json")
d3.download_button("HTML report", plots.html_report(result), f"{stem}.html", "text/html", key="lat_html")
