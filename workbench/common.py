"""Small helpers every part of the workbench may use. A leaf: imports nothing of the package and
no heavy library (no torch, numpy or onnxruntime), so the store and the views stay light.

- ``Progress`` / ``quiet``: the ``progress(fraction, message)`` callback long work reports through.
- ``cpu_count()``: the CPUs this process may run on (its affinity, not the machine's total).
- ``library_versions(names)``: installed versions, "missing" for absent ones.
- ``file_lock(path)``: an exclusive lock across processes (``fcntl.flock``).
- ``atomic_write_bytes`` / ``atomic_write_text`` / ``atomic_write_json``: the one atomic write
  (temp file in the same folder, fsync, one rename, fsync of the folder).
- ``fsync_dir(path)``: make a rename in ``path`` durable.
- ``pid_alive(pid, cmdline_has=...)``: the one process liveness check (zombies count as dead).
- ``human_bytes`` / ``human_count``: numbers for people, at the edge (CLI, pages).
- ``text_config(config)``: the language model's part of a transformers config.
- ``lazy_exports(package, names)``: a module ``__getattr__`` that imports a name on first use.
"""
from __future__ import annotations

import fcntl
import importlib
import importlib.metadata as md
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

Progress = Callable[[float, str], None]


def quiet(fraction: float, message: str) -> None:
    """A ``Progress`` that reports nothing."""


def cpu_count() -> int:
    """CPUs this process may use (``sched_getaffinity``), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def library_versions(names: Iterable[str], missing: str | None = "missing") -> dict[str, str]:
    """``{name: version}`` of installed distributions; absent ones get ``missing`` (or are left
    out when ``missing`` is None)."""
    versions = {}
    for name in names:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            if missing is not None:
                versions[name] = missing
    return versions


@contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the block."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def fsync_dir(path: str | Path) -> None:
    """fsync a folder, so a rename or a new file in it survives a power cut."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _default_mode() -> int:
    """``0o666`` less this process's umask (read from /proc: ``os.umask`` can only be read by
    setting it, which would race other threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o644


def atomic_write_bytes(path: str | Path, data: bytes, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part:
    a temp file in the same folder, flushed and fsynced, one ``os.replace``, then the folder
    fsynced. ``mode`` (e.g. ``0o600`` for secrets) is set on the temp file before any byte is
    written; by default the file gets what ``open`` would give it (``0o666`` less the umask), not
    ``mkstemp``'s private ``0o600``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _default_mode() if mode is None else mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str, mode: int | None = None) -> Path:
    """``atomic_write_bytes`` of ``text`` in UTF-8."""
    return atomic_write_bytes(path, text.encode("utf-8"), mode)


def atomic_write_json(path: str | Path, obj, mode: int | None = None, indent: int | None = 2) -> Path:
    """``atomic_write_text`` of ``obj`` as JSON (UTF-8, not ASCII-escaped)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False), mode)


def pid_alive(pid: int, cmdline_has: Iterable[str] = (), argv_has: Iterable[str] = ()) -> bool:
    """True if process ``pid`` runs (not a zombie) and its command line contains every string of
    ``cmdline_has`` (as substrings of the joined line) and every one of ``argv_has`` (as whole
    arguments), so a pid reused by another program reads as dead."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's
    proc = Path(f"/proc/{pid}")
    try:
        if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
        argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
    except (OSError, IndexError):
        return True  # no /proc (not Linux): kill(0) is all we can know
    cmdline = " ".join(argv)
    return all(part in cmdline for part in cmdline_has) and all(arg in argv for arg in argv_has)


def human_bytes(n: float) -> str:
    """Bytes in decimal (SI) units: 0 B, 999 B, 1.5 KB, 541.6 MB, 1.1 GB, 2.0 TB."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def human_count(n: int) -> str:
    """Parameter counts: 82M, 135M, 141K."""
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


def text_config(config):
    """The language model's config: a multimodal config keeps it in ``text_config``."""
    if hasattr(config, "get_text_config"):
        return config.get_text_config(decoder=True)
    return getattr(config, "text_config", None) or config


def lazy_exports(package: str, names: dict[str, str]):
    """A module-level ``__getattr__`` for ``package`` that imports ``names[name]`` (a submodule,
    relative to ``package``) the first time ``name`` is read, so importing the package stays cheap."""

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(names[name], package), name)

    return __getattr__


class PeakRSS:
    """Peak resident memory inside the block, sampled on a thread every ``interval`` seconds:
    ``peak`` and ``grown`` (peak minus the start), in bytes. Of this process by default, of
    process ``pid`` otherwise, with its children's when ``children``. Subclasses may sample more
    in ``sample()`` (the latency harness adds GPU memory). For benchmarks and scripts."""

    def __init__(self, pid: int | None = None, children: bool = False, interval: float = 0.005):
        import threading

        import psutil

        self.proc, self.children, self.interval = psutil.Process(pid), children, interval
        self._stop = threading.Event()
        self.start = self.peak = 0

    def rss(self) -> int:
        rss = self.proc.memory_info().rss
        if self.children:
            rss += sum(c.memory_info().rss for c in self.proc.children(recursive=True))
        return rss

    def sample(self) -> None:
        self.peak = max(self.peak, self.rss())

    def __enter__(self):
        import threading

        self.start = self.peak = self.rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        import psutil

        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except psutil.Error:  # the process went away
                break

    def __exit__(self, *exc):
        import psutil

        self._stop.set()
        self._thread.join()
        try:
            self.sample()
        except psutil.Error:
            pass

    @property
    def grown(self) -> int:
        return self.peak - self.start
