"""Driving the app in headless Chromium (playwright): start it as the README does, wait for
Streamlit, block every non-loopback request, save screenshots."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from playwright.sync_api import TimeoutError as PlaywrightTimeout

from . import ROOT

SHOTS = Path(os.environ.get("WORKBENCH_SHOTS", ROOT / "artifacts" / "screenshots"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}




def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(home: Path, extra_env: dict | None = None, port: int | None = None):
    """Start ``streamlit run app.py`` as the README does; returns (process, url)."""
    port = port or _free_port()
    env = dict(os.environ, WORKBENCH_HOME=str(home), HF_HUB_OFFLINE="1", **(extra_env or {}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=1) as r:
                if r.read() == b"ok":
                    return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("streamlit did not answer within 60 s")


def stop_app(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def wait_idle(pg, timeout: float = 60_000, start_within: float = 1_500) -> None:
    """Wait until Streamlit has finished the rerun that the last action started.

    Streamlit marks the app root with ``data-test-script-state``: give the rerun up to
    ``start_within`` ms to begin (an action may trigger none), then wait for ``notRunning``."""
    app = '[data-testid="stApp"]'
    try:
        pg.wait_for_selector(f'{app}:not([data-test-script-state="notRunning"])', timeout=start_within)
    except PlaywrightTimeout:  # no rerun started, or it ended between two polls
        pass
    pg.wait_for_selector(f'{app}[data-test-script-state="notRunning"]', timeout=timeout)
    pg.wait_for_timeout(150)


def open_generate_sampling(pg, url: str) -> None:
    """Open the app (the Generate page) and switch decoding from greedy to sampling."""
    pg.goto(url)
    wait_idle(pg)
    pg.get_by_text("Decoding settings").click()
    pg.get_by_text("Sample (off = greedy)").click()
    wait_idle(pg)


def shot(locator_or_page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    locator_or_page.screenshot(path=str(path))
    return path


def new_page(browser, width: int = 1400, height: int = 1000):
    """A page in a fresh context that aborts every non-loopback request and records it in
    ``page.external_requests``."""
    context = browser.new_context(viewport={"width": width, "height": height})
    pg = context.new_page()
    pg.external_requests = []

    def guard(route):
        url = route.request.url
        if url.startswith(("data:", "blob:", "about:")) or (urlparse(url).hostname or "") in LOOPBACK:
            route.continue_()
        else:
            pg.external_requests.append(url)
            route.abort()

    context.route("**/*", guard)
    pg.set_default_timeout(60_000)
    return pg
