"""From `streamlit run app.py` to the first streamed token, as a person sees it in Chromium.

Uses the store at $WORKBENCH_HOME (the default model must be installed: ./run.sh does that).
Measures: server answering, Generate page drawn, first token after the first click (cold: the
model loads), and first token after a second click (warm). Prints a table, then one JSON line.

    .venv/bin/python benchmarks/cold_start.py [--prompt TEXT]
"""
from __future__ import annotations

import argparse
import json
import os
import time


from workbench.testing.browser import CHROMIUM, CHROMIUM_ARGS, new_page, start_app, stop_app  # noqa: E402

from workbench.store import Store, default_home  # noqa: E402


def first_token_ms(page, prompt: str) -> float:
    """Click Generate; ms until streamed text that differs from the previous output shows."""
    page.get_by_label("Prompt").fill(prompt)
    out = page.locator('[class*="st-key-out_"]')
    old = out.first.inner_text() if out.count() else ""
    t0 = time.perf_counter()
    page.get_by_role("button", name="Generate", exact=True).click()
    page.wait_for_function(
        """old => { const e = document.querySelector('[class*="st-key-out_"]');
                    const t = e ? e.innerText.trim() : '';
                    return t.length > 0 && t !== old.trim(); }""",
        arg=old, timeout=120_000,
    )
    ms = (time.perf_counter() - t0) * 1000
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=120_000)
    return ms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompt", default="The capital of France is")
    args = ap.parse_args()
    home = default_home()
    Store(home).path("smollm2-135m-instruct")  # fails with the fix if not installed

    from playwright.sync_api import sync_playwright

    t0 = time.perf_counter()
    proc, url = start_app(home)
    server_s = time.perf_counter() - t0
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = new_page(browser)
            page.goto(url)
            page.get_by_role("button", name="Generate", exact=True).wait_for()
            page_s = time.perf_counter() - t0
            cold = first_token_ms(page, args.prompt)
            total_cold_s = time.perf_counter() - t0
            warm = [first_token_ms(page, f"The capital of {c} is") for c in ("Spain", "Italy", "Japan")]
            external = list(page.external_requests)
            browser.close()
    finally:
        stop_app(proc)
    warm.sort()
    result = {
        "server_ready_s": server_s,
        "page_ready_s": page_s,
        "first_token_after_click_cold_ms": cold,
        "run_to_first_token_cold_s": total_cold_s,
        "first_token_after_click_warm_ms_median": warm[1],
        "external_requests": len(external),
        "cpu_threads": os.cpu_count(),
    }
    print(f"server answering          {server_s:6.2f} s after `streamlit run`")
    print(f"Generate page drawn       {page_s:6.2f} s")
    print(f"first token, cold click   {cold / 1000:6.2f} s (model load included)")
    print(f"run -> first token, cold  {total_cold_s:6.2f} s")
    print(f"first token, warm click   {warm[1] / 1000:6.2f} s (median of 3)")
    print(f"non-loopback requests     {len(external)}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
