"""Several browser sessions using one app at once, on the real default model.

Four sessions generate (sampling, seed 0, different prompts) at the same moment; each output is
compared with the same generation run alone. Peak RSS of the Streamlit server is sampled every
100 ms. Uses the store at $WORKBENCH_HOME (./run.sh installs the default model there). Prints a
table, then one JSON line.

    .venv/bin/python benchmarks/under_load.py [--sessions 4] [--new-tokens 24]
"""
from __future__ import annotations

import argparse
import json
import time

from workbench.common import PeakRSS  # noqa: E402
from workbench.testing.browser import (  # noqa: E402
    CHROMIUM, CHROMIUM_ARGS, new_page, open_generate_sampling, start_app, stop_app, wait_idle,
)

from workbench.views.generation import visible  # noqa: E402
from workbench.runtime.loading import load_model  # noqa: E402
from workbench.store import Store, default_home  # noqa: E402

PROMPTS = ["Once upon a time", "The capital of France is", "日本の首都は", "def fibonacci(n):",
           "<script>alert(1)</script> is", "The best way to learn is"]
MODEL = "smollm2-135m-instruct"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=24)
    args = ap.parse_args()
    home = default_home()
    prompts = PROMPTS[: args.sessions]
    settings = dict(max_new_tokens=args.new_tokens, do_sample=True, temperature=0.7, top_k=50, top_p=0.95, seed=0)
    model = load_model(MODEL, store=Store(home), device="cpu")
    alone = {p: [visible(t.token) for t in model.generate(p, **settings).tokens] for p in prompts}

    from playwright.sync_api import sync_playwright

    proc, url = start_app(home)
    try:
        with PeakRSS(proc.pid, children=True, interval=0.1) as rss, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            pages = [new_page(browser, 1200, 900) for _ in prompts]
            for pg, prompt in zip(pages, prompts):
                open_generate_sampling(pg, url)
                pg.get_by_label("Max new tokens").fill(str(args.new_tokens))
                pg.keyboard.press("Enter")
                wait_idle(pg)
                pg.get_by_label("Prompt").fill(prompt)
            idle_rss = rss.peak
            t0 = time.perf_counter()
            for pg in pages:
                pg.get_by_role("button", name="Generate", exact=True).click()
            done = []
            for pg in pages:
                wait_idle(pg, 600_000)
                pg.locator(".wb-tokens").first.wait_for()
                done.append(time.perf_counter() - t0)
            same = [pg.locator(".wb-tokens .wb-tok").all_inner_texts() == alone[p] for pg, p in zip(pages, prompts)]
            external = sum(len(pg.external_requests) for pg in pages)
            browser.close()
    finally:
        stop_app(proc)
    result = {
        "model": MODEL,
        "sessions": len(prompts),
        "new_tokens": args.new_tokens,
        "all_outputs_equal_solo": all(same),
        "outputs_equal_solo": same,
        "wall_s_all_sessions": max(done),
        "server_peak_rss_mb": rss.peak / 2**20,
        "server_rss_before_generating_mb": idle_rss / 2**20,
        "external_requests": external,
    }
    print(f"{len(prompts)} sessions x {args.new_tokens} tokens on {MODEL}: all done in {max(done):.1f} s")
    print(f"outputs equal to solo runs: {same}")
    print(f"server RSS: {idle_rss / 2**20:.0f} MB before, peak {rss.peak / 2**20:.0f} MB")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
