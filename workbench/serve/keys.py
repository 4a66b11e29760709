"""API keys for the server, stored hashed in ``<store root>/serve/keys.json``.

A key is ``wb-`` + 32 random bytes (urlsafe base64). Only its sha256 is written (a random
256-bit secret needs no slow hash or salt: there is nothing to guess), with its name, the first
characters for recognising it in a list, and when it was made. ``create`` returns the key once;
it cannot be read back. Checks hash the presented key and compare it with every stored hash with
``hmac.compare_digest``. Keys are never logged or put in error messages.

Scopes: each key holds some of ``SCOPES``: ``generate`` (the model routes), ``pull`` (read the
store: ``GET /v1/store/*``), ``publish`` (send entries: ``POST``/``PUT /v1/store/uploads...``).
``create(name)`` without scopes makes a ``generate`` key, as before scopes existed; a key written
before scopes existed (no ``scopes`` field) has ``["generate"]``, so it keeps doing exactly what it
did and cannot read or change the store until a new key is made with ``--scope pull``.

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
SCOPES = ("generate", "pull", "publish")
LEGACY_SCOPES = ("generate",)  # what a key made before scopes existed may do


def parse_scopes(scopes) -> tuple[str, ...]:
    """``scopes`` ("pull,generate" or an iterable) as a sorted tuple of known scopes;
    ``InvalidInputError`` naming the valid ones otherwise."""
    items = scopes.split(",") if isinstance(scopes, str) else list(scopes)
    names = sorted({str(s).strip() for s in items if str(s).strip()})
    unknown = [s for s in names if s not in SCOPES]
    if unknown or not names:
        raise InvalidInputError(
            f"Unknown or empty scope {', '.join(unknown) or repr(scopes)}: use one or more of "
            f"{', '.join(SCOPES)}, separated by commas (`--scope pull,generate`)."
        )
    return tuple(names)


@dataclass(frozen=True)
class KeyInfo:
    name: str
    prefix: str  # the first characters of the key, to tell keys apart
    created: float  # unix seconds
    scopes: tuple[str, ...] = LEGACY_SCOPES

    def to_json(self) -> dict:
        return {"name": self.name, "prefix": self.prefix, "created": self.created, "scopes": list(self.scopes)}


def _info(name: str, entry: dict) -> KeyInfo:
    scopes = entry.get("scopes")
    if isinstance(scopes, list):
        known = tuple(sorted(s for s in scopes if s in SCOPES))
    else:
        known = LEGACY_SCOPES
    return KeyInfo(name, entry.get("prefix", ""), float(entry.get("created", 0)), known)


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

    def create(self, name: str, scopes=LEGACY_SCOPES) -> str:
        """Make a key called ``name`` allowed ``scopes`` (default ``generate``) and return it
        (the only time it is visible)."""
        scopes = parse_scopes(scopes)
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
            keys[name] = {"sha256": _digest(key), "prefix": key[:7], "created": time.time(),
                          "scopes": list(scopes)}
            self._write(keys)
        return key

    def list(self) -> list[KeyInfo]:
        return [_info(n, v) for n, v in sorted(self._read().items())]

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
        info = self.authenticate(key)
        return info.name if info else None

    def authenticate(self, key: str | None) -> KeyInfo | None:
        """The ``KeyInfo`` (scopes included) of the key ``key`` is, or None."""
        if not key:
            return None
        digest = _digest(key)
        found = None
        for name, entry in self._read().items():
            if hmac.compare_digest(digest, str(entry.get("sha256", ""))):
                found = _info(name, entry)
        return found
