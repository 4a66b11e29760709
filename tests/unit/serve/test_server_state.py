"""Which process the API page's Stop may signal: only a `workbench serve` of this store."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from workbench.serve.server import _is_our_server


def _sleeper(*argv: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", *argv])
    cmdline = Path(f"/proc/{proc.pid}/cmdline")
    for _ in range(1000):  # until it has exec'd (before that it shows the parent's command line)
        if b"time.sleep(30)" in cmdline.read_bytes():
            return proc
        time.sleep(0.01)
    raise AssertionError("the child never started")


def test_the_streamlit_app_is_not_taken_for_the_server():
    app = _sleeper("/x/site-packages/workbench/app/app.py", "--server.port=8501", "--server.headless=true")
    server = _sleeper("-m", "workbench", "serve", "--port", "0")
    try:
        assert not _is_our_server(app.pid)  # its path holds "workbench" and "serve"r, as substrings
        assert _is_our_server(server.pid)
    finally:
        for p in (app, server):
            p.kill()
            p.wait()
