"""Markers that select: a test's folder is its tier (tests/conftest.py), so `-m "not browser"`
runs no browser test and `-m "not slow"` no slow one, whatever a file itself declares."""
from __future__ import annotations

import subprocess
import sys

from workbench.testing import ROOT


def _collect(marker: str, folder: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "-m", marker, folder], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_not_browser_selects_no_browser_test():
    out = _collect("not browser", "tests/browser")
    assert out.returncode == 5 and "no tests collected" in out.stdout, out.stdout[-3000:] + out.stderr[-3000:]
    files = {p.name for p in (ROOT / "tests" / "browser").glob("test_*.py")}
    chosen = _collect("browser", "tests/browser")
    assert chosen.returncode == 0, chosen.stdout[-3000:]
    assert files == {line.split("::")[0].rsplit("/", 1)[-1] for line in chosen.stdout.splitlines() if "::" in line}


def test_not_slow_selects_no_slow_test():
    out = _collect("not slow", "tests/slow")
    assert out.returncode == 5 and "no tests collected" in out.stdout, out.stdout[-3000:] + out.stderr[-3000:]
