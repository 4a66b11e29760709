"""Headless Chromium against a real ``streamlit run app.py``.

``app_url``: the app on 127.0.0.1 with its own store holding the tiny models (tiny-llama is the
picked one). ``page``: a Playwright page on the system Chromium that aborts every request to a
non-loopback host and records it in ``page.external_requests``; a test that ends with any there
fails. Screenshots go to ``$WORKBENCH_SHOTS`` (default ``artifacts/screenshots``), and a failed
test leaves one of the page as it was then (``failed-<test name>.png``).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from workbench.testing.browser import CHROMIUM, CHROMIUM_ARGS, new_page, shot, start_app, stop_app
from workbench.testing.stores import make_tiny_store

FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" and report.failed:
        item.stash[FAILED] = True
    return report


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
def page(browser, request):
    pg = new_page(browser)
    yield pg
    if request.node.stash.get(FAILED, False):
        shot(pg, f"failed-{request.node.name}")
    pg.context.close()
    assert pg.external_requests == [], f"the app reached outside this machine: {pg.external_requests}"
