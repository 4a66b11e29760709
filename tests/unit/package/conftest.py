"""The wheel built from this checkout, once per session, for the package tests."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from workbench.testing import ROOT


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory) -> Path:
    """``pip wheel`` of this checkout (no dependencies, no build isolation): the .whl file."""
    dist = tmp_path_factory.mktemp("wheel") / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(dist), str(ROOT)], check=True, timeout=300, capture_output=True)
    return next(dist.glob("*.whl"))


@pytest.fixture(scope="session")
def installed_wheel(built_wheel) -> Path:
    """That wheel installed (without dependencies) into a folder outside the repo."""
    target = built_wheel.parent.parent / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(built_wheel)],
                   check=True, timeout=300, capture_output=True)
    return target
