"""The leaf helpers every part uses: the one atomic write and the one liveness check."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

from workbench.common import atomic_write_bytes, atomic_write_json, atomic_write_text, pid_alive


def test_an_atomic_write_gets_the_mode_open_would_give(tmp_path):
    umask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "card.toml", "id = 'x'\n")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # readable by the store's other users, as before
    assert path.read_text() == "id = 'x'\n"


def test_a_secret_keeps_its_own_mode_and_no_temp_file_is_left(tmp_path):
    path = atomic_write_json(tmp_path / "keys.json", {"k": "é"}, mode=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text(encoding="utf-8").count("é") == 1
    atomic_write_bytes(path, b"{}", mode=0o600)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json"]


def test_pid_alive_tells_a_command_line_apart():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "serve"])
    while b"time.sleep" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes():  # until it has exec'd
        time.sleep(0.01)
    try:
        assert pid_alive(proc.pid)
        assert pid_alive(proc.pid, argv_has=("serve",))
        assert not pid_alive(proc.pid, argv_has=("ser",))  # whole arguments, not substrings
        assert pid_alive(proc.pid, cmdline_has=("time.sleep",))
        assert not pid_alive(proc.pid, cmdline_has=("workbench",))
    finally:
        proc.kill()
        proc.wait()
    assert not pid_alive(proc.pid)
