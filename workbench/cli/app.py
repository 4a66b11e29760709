"""``workbench app [--port N]``: starts the Streamlit app (``streamlit run app.py``) and serves it
until Ctrl-C.

The app's files (``app.py``, ``pages/``, ``.streamlit/config.toml``) are found next to this
package: inside it in an installed wheel (``workbench/app/``, copied there at build from the
repo, see setup.py), else in the source checkout it runs from. Streamlit reads
``.streamlit/config.toml`` only from the current folder, so its settings (loopback only, no usage
statistics, no file watcher) are passed as flags and the user's folder stays the current one.
This module never imports streamlit: the app runs in its own process, which replaces this one.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from ..errors import InvalidInputError, WorkbenchError

PACKAGE = Path(__file__).resolve().parents[1]  # the workbench package this command runs from
DEFAULT_PORT = 8501  # Streamlit's own


def app_folder() -> Path:
    """The folder holding ``app.py``, ``pages/`` and ``.streamlit/config.toml``."""
    for folder in (PACKAGE / "app", PACKAGE.parent):  # a wheel's copy, then the source checkout
        if (folder / "app.py").is_file() and (folder / "pages").is_dir() and (folder / ".streamlit").is_dir():
            return folder
    raise WorkbenchError(
        f"The app's files (app.py, pages/, .streamlit/) are neither in {PACKAGE / 'app'} nor in {PACKAGE.parent}: "
        "reinstall the package from a wheel built from the repo (`pip install .`), or run from the repo.")


def config_flags(config_file: Path) -> list[str]:
    """``--section.option=value`` for every setting in a Streamlit ``config.toml``."""
    try:
        config = tomllib.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise WorkbenchError(f"Cannot read the app's settings {config_file}: {err}. Reinstall the package.") from err
    flags = []
    for section, options in config.items():
        for option, value in options.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            flags.append(f"--{section}.{option}={text}")
    return flags


def streamlit_command(port: int = DEFAULT_PORT) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that start the app on ``port``. The environment puts
    this package first on ``PYTHONPATH``, so the app imports the same workbench as this command."""
    if not 1 <= port <= 65535:
        raise InvalidInputError(f"Port {port} is out of range: use 1-65535.")
    folder = app_folder()
    argv = [sys.executable, "-m", "streamlit", "run", str(folder / "app.py"),
            *config_flags(folder / ".streamlit" / "config.toml"), f"--server.port={port}"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE.parent), env.get("PYTHONPATH", "")) if p)
    return argv, env


def cmd_app(args) -> int:
    argv, env = streamlit_command(args.port)
    print(f"starting the workbench on http://127.0.0.1:{args.port} (Ctrl-C stops it)", file=sys.stderr, flush=True)
    if os.name == "nt":  # no exec there: wait for the child instead
        return subprocess.call(argv, env=env)
    os.execve(argv[0], argv, env)  # the app's process takes this one's place (signals reach it)
    return 0  # not reached


def add_cli(sub) -> None:
    p = sub.add_parser("app", help="start the Streamlit app in the browser")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT})")
    p.set_defaults(func=cmd_app)
