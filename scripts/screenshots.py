"""Take the README's screenshots with the real default model, in headless Chromium.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

Uses the store at $WORKBENCH_HOME (./run.sh installs the default model there). Every
non-loopback request is blocked and reported.
"""
from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from workbench.testing.browser import CHROMIUM, CHROMIUM_ARGS, new_page, start_app, stop_app, wait_idle  # noqa: E402

from workbench.store import default_home  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    ap.add_argument("--pages", default="generate,chat,store")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wanted = set(args.pages.split(","))
    from playwright.sync_api import sync_playwright

    proc, url = start_app(default_home())
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = new_page(browser, 1400, 1800)  # tall: Streamlit scrolls an inner div, so full_page alone misses the fold
            if "generate" in wanted:
                page.goto(url)
                wait_idle(page)
                page.get_by_label("Prompt").fill("The capital of France is")
                page.get_by_role("button", name="Generate", exact=True).click()
                wait_idle(page, 120_000)
                page.get_by_text("Token probabilities and alternatives").click()
                wait_idle(page)
                page.locator(".js-plotly-plot .bars").first.wait_for()  # plotly draws after the rerun
                page.screenshot(path=str(out / "generate.png"), full_page=True)
            if "chat" in wanted:
                page.goto(url)
                wait_idle(page)
                page.get_by_text("Chat", exact=True).click()
                wait_idle(page)
                page.get_by_placeholder("Message the model").fill("Name three colours of the rainbow.")
                page.keyboard.press("Enter")
                wait_idle(page, 120_000)
                page.get_by_text("Time to first token").wait_for()
                page.screenshot(path=str(out / "chat.png"), full_page=True)
            if "store" in wanted:
                page.goto(url + "/store")
                wait_idle(page)
                page.get_by_role("button", name="Add and install").wait_for()
                page.screenshot(path=str(out / "store.png"), full_page=True)
            if "attention" in wanted:
                page.goto(f"{url}/attention")
                wait_idle(page)
                page.get_by_role("button", name="Show attention").click()
                wait_idle(page, 180_000)
                page.locator(".js-plotly-plot").first.wait_for()
                page.wait_for_timeout(1500)
                page.screenshot(path=str(out / "attention.png"), full_page=True)
            if "latency" in wanted:
                page.goto(f"{url}/latency")
                wait_idle(page)
                page.get_by_role("button", name="Export, check and time").click()
                wait_idle(page, 900_000)
                page.locator(".js-plotly-plot").first.wait_for(timeout=900_000)
                page.wait_for_timeout(1500)
                page.screenshot(path=str(out / "latency.png"), full_page=True)
            blocked = page.external_requests
            browser.close()
    finally:
        stop_app(proc)
    print(f"screenshots in {out}; blocked non-loopback requests: {blocked}")


if __name__ == "__main__":
    main()
