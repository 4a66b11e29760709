"""Native backends in a child process: a crash in llama.cpp (or onnxruntime-genai, or any
native library) ends that backend, never the benchmark, the app or the server that drives it.

``IsolatedBackend(name, opener, kwargs)`` starts ``python -m workbench.runtime.backends.isolated``
and speaks a small pipe protocol with it (frames: 4-byte big-endian length + pickle):

- ``open``: the child adopts the parent's ``sys.path``, imports ``opener`` (``"module:callable"``),
  calls it with ``kwargs`` (plain data) and answers the backend's ``settings()``, ``device``,
  ``variant`` and ``weight_bytes_per_token()`` where it has them;
- ``prefill`` (ids, an int64 numpy array ``(1, T)``) and ``step`` (token id, state handle):
  the child runs the backend and answers its logits ``(V,)`` as float32 numpy bytes and a handle
  of the new state, which stays in the child (the parent's handle releases it when dropped);
- ``close``: the child exits (it also exits when the pipe closes, so it never outlives its parent).

The parent side implements the ``Backend`` protocol (logits as float32 CPU torch tensors; one
object may be called from several threads: calls are serialized). When the child dies (SIGSEGV,
SIGABRT, ``os._exit``, killed) or does not answer within ``timeout_s``, the call raises
``BackendCrashedError``, with the signal's name, the phase (``open``, ``first prefill``,
``prefill``, ``step``) and the last lines the child wrote to stderr; every later call raises the
same error at once (a dead backend is not restarted behind the caller's back: make a new one).
An exception inside the child is raised again in the parent as a ``WorkbenchError`` with the
child's message.

Native backends are registered by name (``register_native``): a build hook run in the parent
(``build(model, name, progress, device, threads, store) -> IsolatedBackend``, the same hook the
backend registry calls) and which cards it applies to. ``make_any_backend`` makes a registered
native backend through its hook and anything else through ``backends.make_backend``. ``llamacpp``
is registered here; onnxruntime-genai registers the same way.

Importing this module imports no torch and no native library.
"""
from __future__ import annotations

import importlib
import itertools
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...common import Progress, quiet
from ...errors import WorkbenchError

OPEN_TIMEOUT_S = 900.0  # loading a native model (a GGUF is mapped, a genai graph read)
CALL_TIMEOUT_S = 300.0  # one prefill or step; past it the child is taken for hung and killed
STDERR_TAIL_LINES = 6
_HEADER = struct.Struct(">I")


class BackendCrashedError(WorkbenchError):
    """A native backend's child process died (or hung) during ``phase``; ``signal`` is the
    signal's name (``"SIGSEGV"``) when a signal ended it, ``returncode`` its exit status."""

    def __init__(self, backend: str, phase: str, returncode: int | None, stderr_tail: str = "", hint: str = "",
                 hung_s: float | None = None):
        self.backend, self.phase, self.returncode = backend, phase, returncode
        self.signal = signal_name(returncode)
        self.stderr_tail, self.hint = stderr_tail, hint
        if hung_s is not None:
            how = f"did not answer within {hung_s:g} s during its {phase} and was stopped"
        elif self.signal:
            how = f"died with {self.signal} (signal {-returncode}) during its {phase}"
        else:
            how = f"exited with status {returncode} during its {phase}"
        tail = f" Its last output: {stderr_tail.strip()}" if stderr_tail.strip() else ""
        fix = hint or "Report it with the model and this machine's CPU; the other backends are not affected."
        super().__init__(f"The {backend} backend's process {how}; nothing else was affected. {fix}{tail}")

    def to_json(self) -> dict:
        return {"backend": self.backend, "phase": self.phase, "signal": self.signal,
                "returncode": self.returncode, "error": str(self)}


def signal_name(returncode: int | None) -> str | None:
    """``"SIGSEGV"`` for a process ended by signal 11 (``returncode`` -11), else None."""
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


# --- the registry of native backends ---------------------------------------------------------


@dataclass(frozen=True)
class NativeSpec:
    name: str
    build: str | Callable  # "module:function" (or the function): the parent-side build hook
    applies: Callable | None = None  # card -> bool; None: every card


_NATIVE: dict[str, NativeSpec] = {}


def register_native(name: str, build: str | Callable, applies: Callable | None = None) -> None:
    """Run backend ``name`` in a child process, made by ``build(model, name, progress, device,
    threads, store) -> IsolatedBackend``; ``applies(card)`` says which models it is listed for."""
    _NATIVE[name] = NativeSpec(name, build, applies)


def unregister_native(name: str) -> None:
    _NATIVE.pop(name, None)


def is_native(name: str) -> bool:
    return name in _NATIVE


def native_backends(card=None) -> list[str]:
    """Names of the registered native backends (those that apply to ``card`` when given)."""
    card = getattr(card, "card", card)
    return [s.name for s in _NATIVE.values() if card is None or s.applies is None or s.applies(card)]


def _resolve(target: str | Callable):
    if callable(target):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def make_any_backend(model, name: str, progress: Progress | None = None, device: str | None = None,
                     threads: int | None = None, store=None):
    """A ready backend called ``name``: a registered native one in its own process (its build
    hook), any other through ``backends.make_backend``."""
    spec = _NATIVE.get(name)
    if spec is None:
        from . import make_backend

        return make_backend(model, name, progress=progress, device=device, threads=threads, store=store)
    store = store or getattr(model, "store", None)
    return _resolve(spec.build)(model, name, progress or quiet, device, threads, store)


# --- the parent side ---------------------------------------------------------------------------


class _State:
    """A handle of a sequence's state kept in the child; dropping it frees that state there."""

    __slots__ = ("__weakref__", "_owner", "id")

    def __init__(self, handle: int, owner: IsolatedBackend):
        self.id, self._owner = handle, weakref.ref(owner)

    def __del__(self):
        owner = self._owner()
        if owner is not None:
            owner._released.append(self.id)


def _stop_child(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


class IsolatedBackend:
    """The ``Backend`` protocol over a child process that runs ``opener(**kwargs)`` (see the
    module docstring). ``hint`` is added to a crash's message (how to make that backend run);
    ``weight_bytes``: bytes of weights a decode step reads, when the parent knows them."""

    def __init__(self, name: str, opener: str, kwargs: dict | None = None, hint: str = "",
                 timeout_s: float = CALL_TIMEOUT_S, open_timeout_s: float = OPEN_TIMEOUT_S,
                 weight_bytes: int | None = None):
        self.name, self.hint, self.timeout_s = name, hint, timeout_s
        self._lock = threading.Lock()
        self._released: list[int] = []
        self._error: BackendCrashedError | None = None
        self._prefills = 0
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 -- the child's stderr, read after a crash; closed by close()
        package_root = os.path.dirname(os.path.dirname(importlib.import_module("workbench").__file__))
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            env=env, close_fds=True,
        )
        self._finalizer = weakref.finalize(self, _stop_child, self.proc)
        info = self._call("open", {"sys_path": list(sys.path), "opener": opener, "kwargs": kwargs or {}},
                          phase="open", timeout_s=open_timeout_s)
        self.device = info.get("device", "cpu")
        self.variant = info.get("variant", "native")
        self.note = info.get("note", "")
        self.threads = info.get("threads")
        self._settings = dict(info.get("settings") or {"backend": name, "device": self.device})
        self._settings.update({"isolation": "child process", "pid": self.proc.pid})
        weight_bytes = weight_bytes if weight_bytes is not None else info.get("weight_bytes")
        if weight_bytes is not None:  # bytes of weights one decode step reads (else the harness counts the model's)
            self._weight_bytes = int(weight_bytes)
            self.weight_bytes_per_token = lambda: self._weight_bytes

    @property
    def dead(self) -> bool:
        """The child died or was stopped: every call raises ``BackendCrashedError``."""
        return self._error is not None

    @property
    def error(self) -> BackendCrashedError | None:
        return self._error

    def settings(self) -> dict:
        return dict(self._settings)

    def _stderr_tail(self) -> str:
        try:
            self._stderr.seek(0)
            lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-STDERR_TAIL_LINES:])

    def _fail(self, phase: str, hung_s: float | None = None) -> BackendCrashedError:
        if hung_s is not None:
            self.proc.kill()
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._error = BackendCrashedError(self.name, phase, code, self._stderr_tail(), self.hint, hung_s)
        return self._error

    def _read_exact(self, n: int, deadline_s: float, phase: str) -> bytes:
        out = self.proc.stdout
        data = b""
        while len(data) < n:
            ready, _, _ = select.select([out], [], [], deadline_s)
            if not ready:
                raise self._fail(phase, hung_s=deadline_s)
            chunk = os.read(out.fileno(), n - len(data))
            if not chunk:  # the child is gone
                raise self._fail(phase)
            data += chunk
        return data

    def _call(self, op: str, payload: dict, phase: str, timeout_s: float | None = None):
        with self._lock:
            if self._error is not None:
                raise self._error
            released, self._released = self._released, []
            frame = pickle.dumps((op, payload, released), protocol=pickle.HIGHEST_PROTOCOL)
            try:
                self.proc.stdin.write(_HEADER.pack(len(frame)) + frame)
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                raise self._fail(phase) from None
            wait = timeout_s or self.timeout_s
            size = _HEADER.unpack(self._read_exact(_HEADER.size, wait, phase))[0]
            status, value = pickle.loads(self._read_exact(size, wait, phase))
        if status == "error":
            raise WorkbenchError(f"{self.name}: {value}")
        return value

    def prefill(self, input_ids) -> tuple[Any, _State]:
        import numpy as np
        import torch

        ids = np.ascontiguousarray(np.asarray(input_ids.cpu() if hasattr(input_ids, "cpu") else input_ids),
                                   dtype=np.int64)
        phase = "first prefill" if self._prefills == 0 else "prefill"
        self._prefills += 1
        logits, handle = self._call("prefill", {"ids": ids}, phase)
        return torch.from_numpy(logits), _State(handle, self)

    def step(self, token_id: int, state: _State) -> tuple[Any, _State]:
        import torch

        logits, handle = self._call("step", {"token": int(token_id), "state": getattr(state, "id", None)}, "step")
        return torch.from_numpy(logits), _State(handle, self)

    def synchronize(self) -> None:
        return None

    def close(self) -> None:
        """Stop the child (a polite ``close`` first); safe to call twice."""
        if self.proc.poll() is None and self._error is None:
            try:
                with self._lock:
                    frame = pickle.dumps(("close", {}, []))
                    self.proc.stdin.write(_HEADER.pack(len(frame)) + frame)
                    self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._finalizer()
        self._stderr.close()


# --- the child side ----------------------------------------------------------------------------


def _child_main() -> int:
    """The child's loop: read a frame, run it, answer; exits on ``close`` or a closed pipe.

    The protocol owns the original stdout; anything the native library prints goes to stderr."""
    import numpy as np

    inp = sys.stdin.buffer
    proto = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    backend, states, handles = None, {}, itertools.count(1)

    def read_frame():
        head = inp.read(_HEADER.size)
        if len(head) < _HEADER.size:
            return None
        return pickle.loads(inp.read(_HEADER.unpack(head)[0]))

    def answer(status, value):
        frame = pickle.dumps((status, value), protocol=pickle.HIGHEST_PROTOCOL)
        proto.write(_HEADER.pack(len(frame)) + frame)
        proto.flush()

    def keep(logits, state):
        handle = next(handles)
        states[handle] = state
        return np.ascontiguousarray(np.asarray(logits, dtype=np.float32).reshape(-1)), handle

    while (message := read_frame()) is not None:
        op, payload, released = message
        for handle in released:
            states.pop(handle, None)
        if op == "close":
            break
        try:
            if op == "open":
                sys.path[:] = payload["sys_path"]
                backend = _resolve(payload["opener"])(**payload["kwargs"])
                settings = backend.settings() if hasattr(backend, "settings") else {"backend": payload["opener"]}
                per_token = getattr(backend, "weight_bytes_per_token", None)
                answer("ok", {"settings": settings, "device": getattr(backend, "device", "cpu"),
                              "variant": getattr(backend, "variant", "native"), "note": getattr(backend, "note", ""),
                              "threads": getattr(backend, "threads", None),
                              "weight_bytes": int(per_token()) if per_token is not None else None})
            elif op == "prefill":
                answer("ok", keep(*backend.prefill(payload["ids"])))
            elif op == "step":
                state = states.get(payload["state"])
                if state is None:
                    raise WorkbenchError("that sequence's state was released; start it again with a prefill.")
                answer("ok", keep(*backend.step(payload["token"], state)))
            else:
                raise WorkbenchError(f"unknown request {op!r}")
        except Exception as err:  # noqa: BLE001 -- sent to the parent, which raises it there
            answer("error", str(err) if isinstance(err, WorkbenchError) else f"{type(err).__name__}: {err}")
    return 0


register_native("llamacpp", "workbench.runtime.backends.llamacpp:build",
                applies=lambda card: _resolve("workbench.runtime.backends:from_gguf")(card))

if __name__ == "__main__":
    sys.exit(_child_main())
