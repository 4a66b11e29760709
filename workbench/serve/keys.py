"""API keys for the server, stored hashed in ``<store root>/serve/keys.json``.

A key is ``wb-`` + 32 random bytes (urlsafe base64). Only its sha256 is written (a random
256-bit secret needs no slow hash or salt: there is nothing to guess), with its name, the first
characters for recognising it in a list, and when it was made. ``create`` returns the key once;
it cannot be read back. Checks hash the presented key and compare it with every stored hash with
``hmac.compare_digest``. The file is written to a temp file and renamed into place (mode 0600), and
re-read when it changes, so a key revoked from the CLI stops working in a running server.
Keys are never logged or put in error messages.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

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
    for reads; writes are atomic renames (the last writer wins)."""

    def __init__(self, home: str | Path):
        self.path = Path(home) / "serve" / "keys.json"
        self._lock = threading.Lock()
        self._cache: tuple[float, int, dict] | None = None

    def _read(self) -> dict:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        with self._lock:
            if self._cache and self._cache[:2] == (st.st_mtime, st.st_size):
                return self._cache[2]
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError) as err:
                raise WorkbenchError(
                    f"The key file {self.path} cannot be read ({type(err).__name__}). Delete it and "
                    "create new keys with `workbench keys create NAME`."
                ) from None
            keys = data.get("keys", {}) if isinstance(data, dict) else {}
            self._cache = (st.st_mtime, st.st_size, keys)
            return keys

    def _write(self, keys: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".keys-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"version": 1, "hash": "sha256", "keys": keys}, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        with self._lock:
            self._cache = None

    def create(self, name: str) -> str:
        """Make a key called ``name`` and return it (the only time it is visible)."""
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InvalidInputError(
                f"Key name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit."
            )
        keys = dict(self._read())
        if name in keys:
            raise InvalidInputError(f"A key called '{name}' exists; revoke it first or pick another name.")
        key = PREFIX + secrets.token_urlsafe(32)
        keys[name] = {"sha256": _digest(key), "prefix": key[:7], "created": time.time()}
        self._write(keys)
        return key

    def list(self) -> list[KeyInfo]:
        return [KeyInfo(n, v.get("prefix", ""), float(v.get("created", 0))) for n, v in sorted(self._read().items())]

    def revoke(self, name: str) -> bool:
        """Delete the key called ``name``; False when there was none."""
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
