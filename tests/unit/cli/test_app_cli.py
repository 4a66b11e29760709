"""`workbench app`: the Streamlit command it runs, with the app's settings as flags."""
from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from workbench.cli import app as app_cli
from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.testing import ROOT


def test_from_the_repo_it_runs_the_repo_app_with_its_settings_as_flags():
    argv, env = app_cli.streamlit_command(8611)
    assert argv[1:5] == ["-m", "streamlit", "run", str(ROOT / "app.py")]
    assert argv[-1] == "--server.port=8611"
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert len(argv) == 6 + sum(len(options) for options in config.values())
    for must in ("--server.address=127.0.0.1", "--browser.gatherUsageStats=false", "--server.headless=true",
                 "--client.showSidebarNavigation=false"):
        assert must in argv  # nothing phones home, the app's own menu only
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)  # the app imports this checkout's workbench


def test_a_packaged_copy_is_preferred_and_a_missing_app_says_how_to_fix_it(tmp_path, monkeypatch):
    package = tmp_path / "site" / "workbench"
    monkeypatch.setattr(app_cli, "PACKAGE", package)
    with pytest.raises(WorkbenchError, match="pip install"):
        app_cli.app_folder()
    copy = package / "app"
    (copy / "pages").mkdir(parents=True)
    (copy / ".streamlit").mkdir()
    (copy / "app.py").write_text("")
    (copy / ".streamlit" / "config.toml").write_text('[server]\naddress = "127.0.0.1"\nheadless = true\n')
    argv, _ = app_cli.streamlit_command(9000)
    assert argv[4] == str(copy / "app.py")
    assert argv[5:] == ["--server.address=127.0.0.1", "--server.headless=true", "--server.port=9000"]


def test_a_bad_port_exits_2_with_the_range(capsys, monkeypatch):
    monkeypatch.setattr(app_cli.os, "execve", lambda *a: pytest.fail("started the app"))
    assert main(["app", "--port", "70000"]) == 2
    assert "1-65535" in capsys.readouterr().err


def test_the_command_replaces_itself_with_streamlit(monkeypatch):
    seen = []
    monkeypatch.setattr(app_cli.os, "execve", lambda path, argv, env: seen.append((path, argv, env)))
    assert main(["app", "--port", "8612"]) == 0
    (path, argv, env), = seen
    assert path == argv[0] and "--server.port=8612" in argv and Path(argv[4]).name == "app.py"
