"""API keys for the server, stored hashed in ``<store root>/serve/keys.json``.

A key is ``wb-`` + 32 random bytes (urlsafe base64). Only its sha256 is written (a random
256-bit secret needs no slow hash or salt: there is nothing to guess), with its name, the first
characters for recognising it in a list, and when it was made. ``create`` returns the key once;
it cannot be read back. Checks hash the presented key and compare it with every stored hash with
``hmac.compare_digest``. Keys are never logged or put in error messages.

Concurrency contract:
- every read-modify-write (``create``, ``revoke``) holds an exclusive lock across processes on
  ``keys.lock`` beside the file and reads the file afresh inside it, so two processes changing
  keys at once (the CLI and the API page) never undo each other's change;
- the file is replaced with ``workbench.common.atomic_write_json`` (mode 0600, fsynced, one
  rename), so a reader sees the old set or the new one, never a part;
- ``check`` and ``list`` read the file's bytes on every call and reuse the parse only while the
  bytes are identical: no change can be missed, whatever the file system's timestamp resolution
  or inode reuse (a stat-keyed cache could miss two same-size writes in one clock tick). A key
  revoked from the CLI stops working in a running server on its next request.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..common import atomic_write_json, file_lock
from ..errors import InvalidInputError, WorkbenchError

PREFIX = "wb-"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class KeyInfo:
    name: str
    prefix: str  # the first characters of the key, to tell keys apart
    created: float  # unix seconds

    def to_json(self) -> dict:
        return {"name": self.name, "prefix": self.prefix, "created": self.created}


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyStore:
    """The hashed key file under ``home`` (the store root). Safe across threads and processes
    (see the module docstring)."""

    def __init__(self, home: str | Path):
        self.path = Path(home) / "serve" / "keys.json"
        self.lock_path = self.path.with_name("keys.lock")
        self._lock = threading.Lock()
        self._cache: tuple[bytes, dict] | None = None  # (the file's bytes, their parse)

    def _read(self) -> dict:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as err:
            raise self._unreadable(err) from None
        with self._lock:
            if self._cache is not None and self._cache[0] == raw:
                return self._cache[1]
        try:
            data = json.loads(raw)
        except ValueError as err:
            raise self._unreadable(err) from None
        keys = data.get("keys", {}) if isinstance(data, dict) else {}
        if not isinstance(keys, dict):
            raise self._unreadable(TypeError("'keys' is not a table"))
        with self._lock:
            self._cache = (raw, keys)
        return keys

    def _unreadable(self, err: Exception) -> WorkbenchError:
        return WorkbenchError(
            f"The key file {self.path} cannot be read ({type(err).__name__}). Delete it and "
            "create new keys with `workbench keys create NAME`."
        )

    def _write(self, keys: dict) -> None:
        atomic_write_json(self.path, {"version": 1, "hash": "sha256", "keys": keys}, mode=0o600, indent=1)

    def create(self, name: str) -> str:
        """Make a key called ``name`` and return it (the only time it is visible)."""
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InvalidInputError(
                f"Key name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit."
            )
        key = PREFIX + secrets.token_urlsafe(32)
        with file_lock(self.lock_path):
            keys = dict(self._read())
            if name in keys:
                raise InvalidInputError(f"A key called '{name}' exists; revoke it first or pick another name.")
            keys[name] = {"sha256": _digest(key), "prefix": key[:7], "created": time.time()}
            self._write(keys)
        return key

    def list(self) -> list[KeyInfo]:
        return [KeyInfo(n, v.get("prefix", ""), float(v.get("created", 0))) for n, v in sorted(self._read().items())]

    def revoke(self, name: str) -> bool:
        """Delete the key called ``name``; False when there was none."""
        with file_lock(self.lock_path):
            keys = dict(self._read())
            if name not in keys:
                return False
            del keys[name]
            self._write(keys)
        return True

    def check(self, key: str | None) -> str | None:
        """The name of the key ``key`` is, or None. Constant time in the key's content."""
        if not key:
            return None
        digest = _digest(key)
        found = None
        for name, entry in self._read().items():
            if hmac.compare_digest(digest, str(entry.get("sha256", ""))):
                found = name
        return found
