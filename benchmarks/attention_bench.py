"""Attention explorer speed on a real store model (default SmolLM2 135M), warm.

Measures, in milliseconds, medians over ``--repeats`` after one warm-up:
- ``forward``: the eager forward pass with attention capture (``AttentionResult.forward_ms``);
- ``attention_call``: the whole ``attention()`` call (tokens made readable, top-k, arrays);
- per view, building it and serialising it the way the page sends it (plotly JSON, bertviz HTML);
- ``views``: all views the Attention page draws after "Show attention" (grid of 4 layers x all
  heads, zoomed head, head view, model view, mean over heads, rollout, head statistics).
Also the 512-token case: the memory estimate, the measured growth of this process's peak RSS
and the (reduced) view build time. With ``--browser``, against ``streamlit run app.py`` on this
machine's store in headless Chromium (network blocked): the time from clicking "Show attention"
until the open tab's views (grid, zoomed head) are drawn — this includes the harness's fixed
0.5 s of settling in ``wait_idle`` — and from clicking each other tab until its views are drawn
(tabs run lazily, so they are built and sent when opened).

Prints a table for people, then one line of JSON.

    .venv/bin/python benchmarks/attention_bench.py [--model ID] [--tokens 64] [--repeats 5] [--browser]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import plotly.io as pio
import torch

ROOT = Path(__file__).resolve().parent.parent

from workbench import attention as attn  # noqa: E402
from workbench.common import PeakRSS  # noqa: E402
from workbench.views import attention as views  # noqa: E402
from workbench.views import bertviz as bertviz_offline  # noqa: E402
from workbench.latency.harness import BENCH_TEXT  # noqa: E402
from workbench.store import Store  # noqa: E402


def text_ids(model, n: int) -> list[int]:
    ids = model.tokenizer(BENCH_TEXT * (1 + n // 40))["input_ids"]
    if len(ids) < n:
        raise SystemExit(f"the benchmark text is only {len(ids)} tokens")
    return ids[:n]


def page_views(result) -> dict[str, callable]:
    """What the Attention page builds after "Show attention", each with its serialisation."""
    grid_layers = views.default_layers(result)
    mv_layers = views.default_layers(result, 4)
    last = result.layers[-1]
    return {
        "grid": lambda: pio.to_json(views.heatmap_grid(result, grid_layers)),
        "zoom": lambda: pio.to_json(views.head_heatmap(result, result.layers[0], 0)),
        "head_view": lambda: bertviz_offline.head_view(result).html,
        "model_view": lambda: bertviz_offline.model_view(result, mv_layers).html,
        "mean": lambda: pio.to_json(views.mean_heatmap(result, last)),
        "rollout": lambda: pio.to_json(views.rollout_heatmap(result)),
        "head_stats": lambda: pio.to_json(views.head_stats_figure(attn.head_stats(result), "entropy")),
    }


def time_views(result, repeats: int) -> tuple[dict[str, float], float, dict[str, int]]:
    builders = page_views(result)
    sizes = {name: len(build()) for name, build in builders.items()}  # warm-up
    per: dict[str, list[float]] = {name: [] for name in builders}
    totals = []
    for _ in range(repeats):
        t_all = time.perf_counter()
        for name, build in builders.items():
            t = time.perf_counter()
            build()
            per[name].append((time.perf_counter() - t) * 1000)
        totals.append((time.perf_counter() - t_all) * 1000)
    return {k: statistics.median(v) for k, v in per.items()}, statistics.median(totals), sizes


TAB_READY = {  # what must be drawn before a tab counts as shown
    "Heads": [".st-key-att_grid .js-plotly-plot .heatmaplayer", ".st-key-att_zoom .js-plotly-plot .heatmaplayer"],
    "Head view": [("att_head_view", "svg text")],
    "Model view": [("att_model_view", "svg text")],
    "Summaries": [".st-key-att_mean .js-plotly-plot .heatmaplayer", ".st-key-att_rollout .js-plotly-plot .heatmaplayer",
                  ".st-key-att_stats .js-plotly-plot .heatmaplayer"],
}


def _wait_drawn(page, tab: str) -> None:
    for target in TAB_READY[tab]:
        if isinstance(target, tuple):  # inside a bertviz iframe: wait for its SVG to be drawn
            page.frame_locator(f".st-key-{target[0]} iframe").locator(target[1]).nth(10).wait_for(state="attached")
        else:
            page.locator(target).first.wait_for()


def browser_click_to_drawn(model_id: str, tokens_text: str, repeats: int,
                           page_threads: int | None = None) -> tuple[list[float], list[float], dict]:
    """Seconds from clicking "Show attention" to the first tab (grid and zoomed head) drawn, warm
    model; the forward time the page reports for each click (ms, measured in the server); and
    seconds from clicking each other tab to its views drawn (tabs run lazily)."""
    from playwright.sync_api import sync_playwright

    from workbench.testing.browser import CHROMIUM, CHROMIUM_ARGS, new_page, start_app, stop_app, wait_idle

    proc, url = start_app(Path(os.environ.get("WORKBENCH_HOME") or Store().home))
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = new_page(browser)  # aborts and records every non-loopback request
            page.set_default_timeout(120_000)
            page.goto(url + "/attention")
            wait_idle(page, 120_000)
            page.get_by_role("combobox", name="Model").wait_for(state="attached")
            if page_threads:
                box = page.locator(".st-key-wb_threads input")
                box.fill(str(page_threads))
                box.press("Enter")
                wait_idle(page, 120_000)
            page.locator(".stTextArea textarea").first.fill(tokens_text)
            page.keyboard.press("Control+Enter")
            wait_idle(page, 120_000)
            times, forwards = [], []
            tabs: dict[str, list[float]] = {name: [] for name in TAB_READY if name != "Heads"}
            for i in range(repeats + 1):  # the first click loads the model: not counted
                if i:  # tabs exist once there is a result
                    page.get_by_role("tab", name="Heads", exact=True).click()
                    wait_idle(page, 120_000)
                t = time.perf_counter()
                page.get_by_role("button", name="Show attention").click()
                wait_idle(page, 120_000)
                _wait_drawn(page, "Heads")
                if i:
                    times.append(time.perf_counter() - t)
                    line = page.locator(".st-key-att_summary_line").inner_text()
                    forwards.append(float(line.split("forward ")[1].split(" ms")[0]))
                    for name in tabs:
                        t = time.perf_counter()
                        page.get_by_role("tab", name=name, exact=True).click()
                        _wait_drawn(page, name)  # tabs run lazily: nothing of it exists before
                        tabs[name].append(time.perf_counter() - t)
                        wait_idle(page, 120_000)
            blocked = page.external_requests
            browser.close()
    finally:
        stop_app(proc)
    if blocked:
        raise SystemExit(f"the page reached outside this machine: {blocked}")
    return times, forwards, tabs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--long-tokens", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--browser", action="store_true", help="also time click-to-drawn in Chromium")
    ap.add_argument("--page-threads", type=int, default=None,
                    help="CPU threads to pick in the page's sidebar (default: the page's default, all cores)")
    args = ap.parse_args()

    store = Store()
    model = store.download_model(args.model, attn_implementation="eager", device="cpu", threads=args.threads)
    ids = text_ids(model, args.tokens)

    attn.attention(model, ids=ids)  # warm-up
    forward, call = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        result = attn.attention(model, ids=ids)
        call.append((time.perf_counter() - t) * 1000)
        forward.append(result.forward_ms)
    per_view, views_ms, sizes = time_views(result, args.repeats)

    long_ids = text_ids(model, args.long_tokens)
    estimate = attn.estimate_memory(model, len(long_ids))
    with PeakRSS() as rss:
        long_result = attn.attention(model, ids=long_ids)
    long_per_view, long_views_ms, long_sizes = time_views(long_result, max(1, args.repeats // 2))
    notes = sorted({n for n in (
        views.heatmap_grid(long_result).layout.meta["note"],
        views.head_heatmap(long_result, 0, 0).layout.meta["note"],
        bertviz_offline.head_view(long_result).note,
    ) if n})

    L, H = result.weights.shape[:2]
    print(f"{args.model}: {L} layers x {H} heads, CPU, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'measure':<28}{args.tokens:>6} tok ms{args.long_tokens:>8} tok ms{'bytes @' + str(args.tokens):>16}")
    print(f"{'attention forward':<28}{statistics.median(forward):>13.1f}{long_result.forward_ms:>15.1f}")
    print(f"{'attention() call':<28}{statistics.median(call):>13.1f}")
    for name in per_view:
        print(f"{'  view: ' + name:<28}{per_view[name]:>13.1f}{long_per_view[name]:>15.1f}{sizes[name]:>16,}")
    print(f"{'all views':<28}{views_ms:>13.1f}{long_views_ms:>15.1f}")
    print(f"{args.long_tokens} tokens: estimated {estimate.weights_bytes / 2**20:.0f} MiB weights, "
          f"{estimate.peak_bytes / 2**20:.0f} MiB peak; measured peak RSS growth {rss.grown / 2**20:.0f} MiB")
    for note in notes:
        print(f"  reduced: {note}")
    browser = None
    if args.browser:
        text = model.tokenizer.decode(ids[1:] if ids[0] in model.eos_token_ids else ids)
        browser, page_forward, tab_times = browser_click_to_drawn(
            args.model, text, max(1, args.repeats // 2), args.page_threads)
        print(f"Chromium, warm: click 'Show attention' to the Heads tab drawn: median "
              f"{statistics.median(browser):.2f} s ({', '.join(f'{x:.2f}' for x in browser)}); the server's "
              f"forward took {', '.join(f'{x:.0f}' for x in page_forward)} ms of it")
        for name, values in tab_times.items():
            print(f"  open tab '{name}' to drawn: median {statistics.median(values):.2f} s "
                  f"({', '.join(f'{x:.2f}' for x in values)})")
    print(json.dumps({
        "model": args.model,
        "tokens": args.tokens,
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0],
        "forward_ms": statistics.median(forward),
        "attention_call_ms": statistics.median(call),
        "views_ms": views_ms,
        "per_view_ms": per_view,
        "view_bytes": sizes,
        "long_tokens": args.long_tokens,
        "long_forward_ms": long_result.forward_ms,
        "long_views_ms": long_views_ms,
        "long_estimated_weights_bytes": estimate.weights_bytes,
        "long_estimated_peak_bytes": estimate.peak_bytes,
        "long_measured_rss_growth_bytes": rss.grown,
        "browser_click_to_drawn_s": statistics.median(browser) if browser else None,
        "browser_page_forward_ms": statistics.median(page_forward) if browser else None,
        "browser_tab_to_drawn_s": {k: statistics.median(v) for k, v in tab_times.items()} if browser else None,
        "page_threads": args.page_threads,
    }))


if __name__ == "__main__":
    main()
