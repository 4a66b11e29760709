"""Kill the process in the middle of a real install, start again: no half-written entry, the
staging folder is swept, the store lists the model as available."""
import os
import signal
import subprocess
import sys
import time

import pytest

from workbench.testing import ROOT
from workbench.store import AVAILABLE, Store

pytestmark = pytest.mark.slow


def test_killed_install_leaves_a_consistent_store(tmp_path):
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench", "store", "install", "smollm2-135m-instruct"],
        cwd=ROOT, env=dict(os.environ, WORKBENCH_HOME=str(home)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    staging = home / ".staging"
    deadline = time.monotonic() + 300
    try:
        # wait until the install has real bytes in its staging folder (downloading or converting)
        while time.monotonic() < deadline and proc.poll() is None:
            if staging.is_dir() and any(p.is_file() and p.stat().st_size > 1_000_000 for p in staging.rglob("*")):
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the install finished before it could be interrupted"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert any(staging.iterdir())  # the dead process left its work behind...
    store = Store(home)  # ...and the next start sweeps it
    assert list(store.staging_dir.iterdir()) == []
    assert not (store.models_dir / "smollm2-135m-instruct").exists()
    assert store.entry("smollm2-135m-instruct").status == AVAILABLE
