"""The wheel carries the Streamlit app (app.py, pages/, the .streamlit settings), so `workbench
app` works from an installed package; the copy is the repo's, which stays the source."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

from workbench.testing import ROOT


def test_the_wheel_lists_the_app_its_pages_and_settings(built_wheel):
    names = set(zipfile.ZipFile(built_wheel).namelist())
    assert "workbench/app/app.py" in names
    assert "workbench/app/.streamlit/config.toml" in names
    pages = {n.removeprefix("workbench/app/pages/") for n in names if n.startswith("workbench/app/pages/")}
    assert pages == {p.name for p in (ROOT / "pages").glob("*.py")}
    wheel = zipfile.ZipFile(built_wheel)
    assert wheel.read("workbench/app/app.py") == (ROOT / "app.py").read_bytes()
    assert wheel.read("workbench/app/.streamlit/config.toml") == (ROOT / ".streamlit" / "config.toml").read_bytes()
    assert not any(n.startswith("pages/") or n == "app.py" for n in names)  # no top-level `pages` package


def test_the_installed_app_command_finds_the_wheel_copy(installed_wheel, tmp_path):
    code = ("from workbench.cli.app import streamlit_command\n"
            "argv, env = streamlit_command(8600)\n"
            "print(argv[4]); print(env['PYTHONPATH'].split(__import__('os').pathsep)[0])\n")
    env = dict(os.environ, PYTHONPATH=str(installed_wheel), WORKBENCH_HOME=str(tmp_path / "home"))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    app, first_path = out.stdout.split()
    assert app == str(installed_wheel / "workbench" / "app" / "app.py") and first_path == str(installed_wheel)


def _clean_copy(target):
    """The checkout's files as a clean clone would have them (no build output, no egg-info, whose
    SOURCES.txt setuptools would otherwise add to the sdist)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True, timeout=60).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target


def test_a_wheel_built_from_the_sdist_is_as_complete(built_wheel, tmp_path):
    """`python -m build` makes the wheel from the sdist: MANIFEST.in must carry what setup.py copies."""
    clone = _clean_copy(tmp_path / "clone")
    code = f"from setuptools import build_meta; print(build_meta.build_sdist({str(tmp_path)!r}))"
    made = subprocess.run([sys.executable, "-c", code], cwd=clone, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr[-3000:]
    with tarfile.open(tmp_path / made.stdout.strip().splitlines()[-1]) as sdist:
        sdist.extractall(tmp_path / "src", filter="data")
    source = next((tmp_path / "src").iterdir())
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(source)], check=True, timeout=300, capture_output=True)
    from_sdist = set(zipfile.ZipFile(next((tmp_path / "dist").glob("*.whl"))).namelist())
    carried = {n for n in zipfile.ZipFile(built_wheel).namelist()
               if n.startswith(("workbench/app/", "workbench/store/cards/", "workbench/data/cards/"))}
    assert carried and carried - from_sdist == set()
