"""Run the API server: in a thread of this process (tests, benchmarks, notebooks), in the
foreground (``workbench serve``), or as a background process the API page starts and stops.

A foreground server writes ``<store root>/serve/server.json`` (pid, host, port, models) while it
runs and removes it on exit, so any process (a reloaded page) can find it, check it by pid and
``/health``, and stop it. ``store_only`` serves the store's routes (``/v1/store/*``) without a
model registry: no model is loaded and torch is not imported. The default host is 127.0.0.1; any other host prints a loud warning.

Secrets never reach a log line: every handler of the server's loggers (uvicorn's access and
error logs, and in the foreground server the root logger) formats through ``RedactingFormatter``,
which replaces workbench keys (``wb-...``), ``Bearer`` tokens and the values of key-like query
parameters (``?api_key=...``, ``token``, ``password``...) with ``[redacted]``, so a client that
puts its key in the URL does not leave it in the access log.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import uvicorn

from ..common import atomic_write_json, pid_alive
from .secrets import REDACTED, redact  # noqa: F401  (REDACTED: re-exported for tests)
from ..errors import WorkbenchError
from .app import create_app
from .keys import KeyStore
from .metrics import ServeMetrics

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str) -> str | None:
    if is_loopback(host):
        return None
    return (
        f"WARNING: binding {host}: the API is reachable from other machines on the network. Every "
        "request still needs an API key, traffic is plain HTTP (keys and prompts readable on the "
        "wire): put a TLS proxy in front, or bind 127.0.0.1."
    )


# --- secrets out of the logs (patterns in ``secrets``) -------------------------------------------

SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


class RedactingFormatter(logging.Formatter):
    """Formats with ``inner`` (the handler's own formatter), then ``redact``s the whole line,
    tracebacks included."""

    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


def redact_logs(loggers=SERVER_LOGGERS) -> None:
    """Put ``RedactingFormatter`` on every handler of ``loggers`` ("" is the root logger), once."""
    for name in loggers:
        for handler in logging.getLogger(name).handlers:
            if not isinstance(handler.formatter, RedactingFormatter):
                handler.setFormatter(RedactingFormatter(handler.formatter))


class NoModels:
    """The registry of a ``--store-only`` server: serves no model, loads nothing."""

    batchers: dict = {}

    def ids(self) -> list[str]:
        return []

    def preload(self) -> None:
        pass

    def close(self) -> None:
        pass


def build_app(store, models: list[str] | None = None, backend: str = "torch", device: str = "cpu",
              max_batch: int = 8, max_waiting: int = 32, cors_origins=(), max_body_bytes: int | None = None,
              store_only: bool = False):
    """The app and its registry for ``store`` (the caller closes the registry). With
    ``store_only`` the registry is a ``NoModels`` and the app serves the store's routes only."""
    metrics = ServeMetrics()
    extra = {"max_body_bytes": max_body_bytes} if max_body_bytes else {}
    if store_only:
        if models:
            raise WorkbenchError("--store-only serves no model: leave out --model, or drop --store-only.")
        app = create_app(None, KeyStore(store.home), metrics, cors_origins=cors_origins, store=store, **extra)
        return app, NoModels()
    from .registry import ModelRegistry  # loads torch: not for a store-only server

    registry = ModelRegistry(store, models, backend=backend, device=device, max_batch=max_batch,
                             max_waiting=max_waiting, metrics=metrics)
    app = create_app(registry, KeyStore(store.home), metrics, cors_origins=cors_origins, **extra)
    return app, registry


class ServerThread:
    """uvicorn in a daemon thread: ``with ServerThread(app) as s: requests.get(s.url + ...)``."""

    def __init__(self, app, host: str = LOOPBACK, port: int = 0):
        self.host, self.port = host, port or free_port(host)
        config = uvicorn.Config(app, host=self.host, port=self.port, log_level="warning", access_log=False,
                                lifespan="off")
        redact_logs()  # uvicorn's handlers exist once its config is made
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise WorkbenchError(f"The server did not start on {self.url}; is the port taken?")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --- the foreground server and its state file -----------------------------------------------------

@dataclass(frozen=True)
class ServerState:
    pid: int
    host: str
    port: int
    models: list[str]
    backend: str
    started: float
    log: str = ""
    store_only: bool = False

    @property
    def url(self) -> str:
        host = LOOPBACK if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


def state_path(home: str | Path) -> Path:
    return Path(home) / "serve" / "server.json"


def serve_forever(store, models: list[str] | None, backend: str = "torch", host: str = LOOPBACK,
                  port: int = 8000, cors_origins=(), device: str = "cpu", max_batch: int = 8,
                  max_waiting: int = 32, say=print, store_only: bool = False) -> None:
    """Load the models (none with ``store_only``), write the state file, serve until
    SIGINT/SIGTERM, then clean up."""
    root = logging.getLogger()
    if not root.handlers:  # the workbench's own warnings (a skipped card) as formatted, redacted lines
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        root.addHandler(handler)
    redact_logs(("",))
    app, registry = build_app(store, models, backend, device, max_batch, max_waiting, cors_origins,
                              store_only=store_only)
    try:
        registry.preload()
        warning = exposure_warning(host)
        if warning:
            say("\n" + "!" * 100 + "\n" + warning + "\n" + "!" * 100 + "\n")
        if not KeyStore(store.home).list():
            say("No API keys yet: every request will get 401. Create one with `workbench keys create NAME`.")
        what = "the store only" if store_only else f"{', '.join(registry.ids()) or 'no models'} ({backend})"
        say(f"Serving {what} on http://{host}:{port}, the store at /v1/store "
            f"(CORS {'for ' + ', '.join(cors_origins) if cors_origins else 'off'}).")
        path = state_path(store.home)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = ServerState(os.getpid(), host, port, registry.ids(), backend, time.time(),
                            str(path.parent / "server.log"), store_only)
        atomic_write_json(path, asdict(state))
        try:
            config = uvicorn.Config(app, host=host, port=port, log_level="info", lifespan="off")
            redact_logs()
            uvicorn.Server(config).run()
        finally:
            current = read_state(store.home, check_alive=False)
            if current and current.pid == os.getpid():
                path.unlink(missing_ok=True)
    finally:
        registry.close()


def read_state(home: str | Path, check_alive: bool = True) -> ServerState | None:
    """The running server of this store root, or None (a stale file of a dead process is removed)."""
    path = state_path(home)
    try:
        state = ServerState(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if check_alive and not _is_our_server(state.pid):
        path.unlink(missing_ok=True)
        return None
    return state


def _is_our_server(pid: int) -> bool:
    return pid_alive(pid, cmdline_has=("workbench",), argv_has=("serve",))  # "serve" as an argument, not a substring


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


START_TIMEOUT_S = 180.0  # loading the models and binding, exports aside


def serve_backends(cards) -> list[str]:
    """Backends every one of ``cards`` can be served on, torch first."""
    from ..runtime.backends import available_backends

    names = [available_backends(card) for card in cards]
    return [n for n in names[0] if all(n in other for other in names[1:])] if names else ["torch"]


def start_seconds(store, models: list[str], backend: str) -> float:
    """How long a server start may take: ``START_TIMEOUT_S`` plus 1.5x the estimated time of the
    ONNX exports ``backend`` still needs for ``models``."""
    from ..onnx import pending_export_seconds
    from ..runtime.backends import BACKEND_VARIANTS

    variant = BACKEND_VARIANTS.get(backend)
    exports = sum(pending_export_seconds(store, m, [variant]) for m in models) if variant else 0.0
    return START_TIMEOUT_S + 1.5 * exports


def start_background(home: str | Path, models: list[str] | None = None, backend: str = "torch",
                     port: int | None = None, timeout: float = START_TIMEOUT_S) -> ServerState:
    """Start ``workbench serve`` on 127.0.0.1 as a process of its own and wait until it answers.
    If this store root's server already runs, return it."""
    running = read_state(home)
    if running:
        return running
    port = port or free_port()
    log = state_path(home).parent / "server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "workbench", "serve", "--host", LOOPBACK, "--port", str(port), "--backend", backend]
    for m in models or []:
        cmd += ["--model", m]
    env = dict(os.environ, WORKBENCH_HOME=str(home), PYTHONUNBUFFERED="1")
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise WorkbenchError("The server stopped while starting: " + " | ".join(tail))
        state = read_state(home)
        if state and state.pid == proc.pid and healthy(state.url, 1.0):
            return state
        time.sleep(0.3)
    proc.terminate()
    raise WorkbenchError(f"The server did not answer within {timeout:.0f} s; see {log}.")


def stop_background(home: str | Path, timeout: float = 20.0) -> bool:
    """Stop this store root's server (SIGTERM, then SIGKILL); False when none ran."""
    state = read_state(home)
    if state is None:
        return False
    os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _is_our_server(state.pid):
        time.sleep(0.2)
    if _is_our_server(state.pid):
        os.kill(state.pid, signal.SIGKILL)
    try:
        os.waitpid(state.pid, os.WNOHANG)  # reap it when this process started it
    except ChildProcessError:
        pass
    state_path(home).unlink(missing_ok=True)
    return True
