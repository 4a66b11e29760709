"""`workbench app` from an installed wheel, outside the repo: the wheel carries app.py, pages/
and the .streamlit settings, and its first page is drawn in headless Chromium, network blocked."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import psutil

from workbench.testing.browser import stop_app, wait_idle


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(proc: subprocess.Popen, url: str, within_s: float = 60) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"`workbench app` exited: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=1) as r:
                if r.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"`workbench app` did not answer on {url} within {within_s:.0f} s")


def test_workbench_app_from_an_installed_wheel_draws_its_first_page(installed_wheel, browser_home, tmp_path, page):
    cwd = tmp_path / "elsewhere"  # no app.py, pages/ or .streamlit/ here
    cwd.mkdir()
    env = dict(os.environ, PYTHONPATH=str(installed_wheel), WORKBENCH_HOME=str(browser_home), HF_HUB_OFFLINE="1")
    where = subprocess.run([sys.executable, "-c", "import workbench; print(workbench.__file__)"],
                           cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert where.stdout.strip().startswith(str(installed_wheel))

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "app", "--port", str(port)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(proc, url)
        command = psutil.Process(proc.pid).cmdline()  # the command's process became Streamlit's
        assert str(installed_wheel / "workbench" / "app" / "app.py") in command
        assert "--browser.gatherUsageStats=false" in command and "--server.address=127.0.0.1" in command
        page.goto(url)
        wait_idle(page)
        page.get_by_role("heading", name="Generate").wait_for()
        wait_idle(page)
        menu = page.locator(".st-key-wb_menu").inner_text()
        assert "Store" in menu and "Latency" in menu  # app.py's own menu: its pages came along
        assert page.locator('[data-testid="stSidebarNav"]').count() == 0  # .streamlit settings applied
        assert page.locator('[data-testid="stException"]').count() == 0
    finally:
        stop_app(proc)
