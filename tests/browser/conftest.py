"""Headless Chromium against a real ``streamlit run app.py``.

``app_url``: the app on 127.0.0.1 with its own store holding the tiny models (tiny-llama is the
picked one). ``page``: a Playwright page on the system Chromium that aborts every request to a
non-loopback host and records it in ``page.external_requests``; a test that ends with any there
fails. Screenshots go to ``$WORKBENCH_SHOTS`` (default ``artifacts/screenshots``).
"""
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

import pytest

from helpers import ROOT, make_tiny_store

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


@pytest.fixture(scope="session")
def browser_home(tmp_path_factory, tiny_model_dirs) -> Path:
    home = tmp_path_factory.mktemp("browser-home")
    make_tiny_store(home, tiny_model_dirs)
    return home


@pytest.fixture(scope="session")
def app_url(browser_home):
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: `apt-get install -y chromium` (the test script does this).")
    proc, url = start_app(browser_home)
    yield url
    stop_app(proc)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.external_requests = []

    def guard(route):
        host = urlparse(route.request.url).hostname or ""
        if route.request.url.startswith(("data:", "blob:", "about:")) or host in LOOPBACK:
            route.continue_()
        else:
            pg.external_requests.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    pg.set_default_timeout(60_000)
    yield pg
    context.close()
    assert pg.external_requests == [], f"the app reached outside this machine: {pg.external_requests}"
