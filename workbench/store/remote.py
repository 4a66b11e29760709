"""A workbench's store seen from another machine: the HTTP client of the ``/v1/store/*`` routes,
and ``RemoteStore``, what ``Store(url=URL, api_key=KEY)`` returns.

Contract:

- ``StoreClient`` speaks the protocol of ``docs/sharing.md`` (index, entries, blobs with HTTP
  Range, uploads) with ``Authorization: Bearer KEY`` and nothing else: no retries, no caching.
  Every failure becomes a ``WorkbenchError`` whose message says what to do: a wrong, missing or
  revoked key (401), a key without the scope (403, naming it), an unknown id (404), an id that
  exists there (409), a server that went away (``RemoteUnavailableError``: run it again, a pull
  resumes from the bytes it kept).
- ``RemoteStore.list()`` is the remote catalog; ``pull`` / ``download_model`` install into the
  *local* store (``workbench.store.transfer``); ``push`` sends a local entry there.
- Keys are never put in messages or logs.
"""
from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import tomllib

from ..errors import (
    IntegrityError,
    SourceUnavailableError,
    UnknownModelError,
    WorkbenchError,
)


KINDS = ("model", "dataset", "app")
CHUNK = 1 << 20
ENV_KEY = "WORKBENCH_API_KEY"


class RemoteError(SourceUnavailableError):
    """A remote store answered with an error, or could not be reached."""


class RemoteAuthError(RemoteError):
    """401: the key is missing, wrong or revoked."""


class RemoteScopeError(RemoteError):
    """403: the key lacks the scope the route needs."""


class RemoteClashError(RemoteError):
    """409: the id exists there (push), or an upload is not complete."""


class RemoteUnavailableError(RemoteError):
    """The server could not be reached or went away mid-transfer."""


def _scope_of(path: str, method: str) -> str:
    return "publish" if method != "GET" else "pull"


@dataclass(frozen=True)
class RemoteEntry:
    """One entry of a remote store's index (the protocol's ENTRY)."""

    kind: str
    id: str
    builtin: bool
    card: str | None  # the card's TOML text; None for a card that ships with the workbench
    digest: str
    manifest: dict
    size_bytes: int

    @classmethod
    def from_json(cls, data: dict) -> RemoteEntry:
        try:
            return cls(str(data["kind"]), str(data["id"]), bool(data.get("builtin", False)),
                       data.get("card"), str(data["digest"]), dict(data["manifest"]),
                       int(data.get("size_bytes", 0)))
        except (KeyError, TypeError, ValueError) as err:
            raise RemoteError(f"The remote store sent an entry the workbench cannot read ({err!r}); "
                              "update the workbench on both machines to the same version.") from err

    @property
    def files(self) -> dict:
        return self.manifest.get("files", {})

    def card_fields(self) -> dict:
        """The card's top-level fields (name, description, ...), {} for a built-in or unreadable card."""
        if not self.card:
            return {}
        try:
            return tomllib.loads(self.card)
        except tomllib.TOMLDecodeError:
            return {}

    @property
    def name(self) -> str:
        return str(self.card_fields().get("name", self.id))

    @property
    def description(self) -> str:
        return str(self.card_fields().get("description", ""))

    def to_json(self) -> dict:
        return {"kind": self.kind, "id": self.id, "builtin": self.builtin, "card": self.card,
                "digest": self.digest, "manifest": self.manifest, "size_bytes": self.size_bytes}


class StoreClient:
    """HTTP client of one remote store at ``url`` (``http://host:port``, no trailing path)."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 30.0):
        url = url.strip().rstrip("/")
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise WorkbenchError(f"{url!r} is not a store URL: give one like http://host:8000 "
                                 "(the address `workbench serve` prints).")
        self.url = url
        self.api_key = api_key if api_key is not None else os.environ.get(ENV_KEY)
        self.timeout = timeout

    # --- plumbing ------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, body: bytes | BinaryIO | None = None,
                 headers: dict | None = None, what: str = "") -> http.client.HTTPResponse:
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=dict(headers or {}))
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            return urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as err:
            raise self._http_error(err, method, path, what) from None
        except (TimeoutError, urllib.error.URLError, ConnectionError, http.client.HTTPException, OSError) as err:
            reason = getattr(err, "reason", err)
            raise RemoteUnavailableError(
                f"Cannot reach the store at {self.url} ({reason}). Check that `workbench serve` runs there "
                "and the URL is right, then run the command again."
            ) from None

    def _http_error(self, err: urllib.error.HTTPError, method: str, path: str, what: str) -> RemoteError:
        try:
            message = json.loads(err.read() or b"{}").get("error", {}).get("message", "")
        except (ValueError, AttributeError, OSError):
            message = ""
        where = f"The store at {self.url}"
        if err.code == 401:
            how = "pass it with --key or $WORKBENCH_API_KEY" if self.api_key else "none was given: pass one with --key or $WORKBENCH_API_KEY"
            return RemoteAuthError(
                f"{where} refused the key (missing, wrong or revoked; {how}). Ask its owner for a key made "
                f"with `workbench keys create NAME --scope {_scope_of(path, method)}`."
            )
        if err.code == 403:
            scope = _scope_of(path, method)
            return RemoteScopeError(
                message or f"{where} says this key lacks the '{scope}' scope. Ask its owner for a key made "
                f"with `workbench keys create NAME --scope {scope}`."
            )
        if err.code == 404:
            return UnknownModelError(message or f"{where} has no {what or 'such item'}. "
                                     f"List what it holds with `workbench store list --from {self.url}`.")
        if err.code == 409:
            return RemoteClashError(message or f"{where} refused {what}: it already holds it. Use --as NEW_ID.")
        if err.code == 422:
            return IntegrityError(message or f"{where} refused {what}: the bytes do not match their sha256. "
                                  "Check the local copy with `workbench store verify ID`.")
        if err.code == 413:
            return RemoteError(message or f"{where} refused {what} as too large; raise its body limit.")
        return RemoteError(f"{where} answered {err.code} to {method} {path}: {message or err.reason}. "
                           "Try again; if it persists, read that server's log.")

    def _json(self, method: str, path: str, payload: dict | None = None, what: str = "") -> dict:
        body = json.dumps(payload).encode() if payload is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        with self._request(method, path, body=body, headers=headers, what=what) as resp:
            try:
                raw = resp.read()
                return json.loads(raw) if raw else {}
            except (ValueError, OSError, http.client.HTTPException) as err:
                raise RemoteUnavailableError(f"The store at {self.url} sent an unreadable answer to {path} "
                                             f"({type(err).__name__}); run the command again.") from None

    # --- pull ----------------------------------------------------------------------------

    def index(self) -> list[RemoteEntry]:
        data = self._json("GET", "/v1/store/index", what="index")
        return [RemoteEntry.from_json(e) for e in data.get("entries", [])]

    def entry(self, kind: str, item_id: str) -> RemoteEntry:
        if kind not in KINDS:
            raise WorkbenchError(f"Unknown kind {kind!r}: use one of {', '.join(KINDS)}.")
        quoted = urllib.parse.quote(item_id, safe="")
        return RemoteEntry.from_json(self._json("GET", f"/v1/store/entries/{kind}/{quoted}", what=f"{kind} '{item_id}'"))

    def download(self, sha256: str, out: BinaryIO, offset: int = 0,
                 on_bytes: Callable[[memoryview], None] = lambda b: None) -> bool:
        """Write the blob's bytes from ``offset`` on to ``out`` (calling ``on_bytes`` with each
        block). Returns True when the server honoured the Range (206), False when it sent the
        whole file (200; the caller must then start from 0: ``out`` has been written from 0 only
        if the caller truncated it). A server gone mid-body raises ``RemoteUnavailableError``.

        Blocks are read straight into buffers (``resp.readinto``, no copy per block). An ``out``
        with a ``buffer()`` method hands out the buffers and owns each block written to it (a
        pipelined writer); any other ``out`` gets blocks of one reused buffer, so it must copy
        what it keeps. ``on_bytes`` must not keep the block either."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp = self._request("GET", f"/v1/store/blobs/{sha256}", headers=headers, what=f"file {sha256[:12]}")
        own = getattr(out, "buffer", None)
        scratch = None if own else bytearray(CHUNK)
        with resp:
            ranged = resp.status == 206
            if offset and not ranged:
                return False
            expected, got = resp.length, 0
            try:
                while True:
                    buf = own() if own else scratch
                    n = resp.readinto(buf)
                    if not n:
                        break
                    block = memoryview(buf)[:n]
                    got += n
                    on_bytes(block)
                    out.write(block)
            except (TimeoutError, ConnectionError, http.client.HTTPException) as err:
                raise self.gone(type(err).__name__) from None
            if expected is not None and got < expected:  # the connection closed early, without an error
                raise self.gone(f"{got} of {expected} bytes arrived")
        return True

    def gone(self, why: str) -> RemoteUnavailableError:
        return RemoteUnavailableError(
            f"The store at {self.url} went away mid-transfer ({why}). The bytes received so far are kept: "
            "run the same command again to resume."
        )

    # --- publish -------------------------------------------------------------------------

    def start_upload(self, kind: str, item_id: str, card: str | None, manifest: dict) -> tuple[str, list[str]]:
        data = self._json("POST", "/v1/store/uploads", {"kind": kind, "id": item_id, "card": card, "manifest": manifest},
                          what=f"{kind} '{item_id}'")
        return str(data["upload"]), [str(s) for s in data.get("missing", [])]

    def upload_blob(self, token: str, sha256: str, body: bytes | BinaryIO, size: int) -> None:
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        with self._request("PUT", f"/v1/store/uploads/{token}/blobs/{sha256}", body=body, headers=headers,
                           what=f"file {sha256[:12]}") as resp:
            resp.read()

    def commit_upload(self, token: str, what: str) -> RemoteEntry:
        return RemoteEntry.from_json(self._json("POST", f"/v1/store/uploads/{token}/commit", {}, what=what))


def stream_file(path: Path, on_bytes: Callable[[int], None]) -> Iterable[bytes]:
    """``path``'s bytes in blocks, reporting each block's length (an upload body)."""
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            on_bytes(len(block))
            yield block
