"""The ``/v1/store/*`` routes: the server serves its store, and receives entries pushed to it.

Protocol (the design contract of issue 22; the client in the store package speaks it)::

    GET  /v1/store/index                          (pull)    {"entries": [ENTRY, ...]}
    GET  /v1/store/entries/{kind}/{id}            (pull)    ENTRY; 404 unknown kind or id
    GET  /v1/store/blobs/{sha256}                 (pull)    the bytes; one HTTP Range (206 +
                                                            Content-Range; 416 unsatisfiable);
                                                            ETag "<sha256>"; 404 unknown
    POST /v1/store/uploads                        (publish) {"kind","id","card","manifest"} ->
                                                            201 {"upload", "missing"}; 409 id taken
    PUT  /v1/store/uploads/{token}/blobs/{sha256} (publish) raw bytes, checked on arrival: 204;
                                                            422 mismatch (nothing kept)
    POST /v1/store/uploads/{token}/commit         (publish) 201 ENTRY, whole or not at all; 409
                                                            listing missing blobs (``missing``)

Scopes are checked by the app's guard before a route runs (``app.Guard``). ENTRY and the entry
logic are ``workbench.store.entries``; this module only speaks HTTP.

Uploads: a POST checks the manifest (paths inside the entry, sizes and hashes well formed), the
id (409 when taken) and the disk (507 when the entry does not fit), all before any byte is
accepted, and answers the sha256s this store does not hold. Each PUT streams to a temp file in
the upload's folder under ``<store>/.staging/`` (named with this pid, so a dead server's uploads
are swept), never held in memory whole, capped at the size the manifest declares, and hashed on
the way: a mismatch deletes the file and answers 422. Commit installs through
``entries.receive_entry``. An upload left idle for ``UPLOAD_IDLE_S`` is deleted, so an
interrupted push leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..errors import (
    CardError,
    DiskSpaceError,
    IntegrityError,
    InvalidInputError,
    UnsupportedModelError,
)
from ..store import entries
from ..store.entries import (
    SHA256_RE,
    EntryExistsError,
    MissingBlobsError,
    StoreIndex,
    UnknownEntryError,
)
from ..store.install import publish
from .errors import (
    BadEntryError,
    BlobMismatchError,
    BlobTooLargeError,
    ConflictError,
    ForbiddenError,
    MissingError,
    NoSpaceError,
    NotFoundError,
    RangeError,
    ServeError,
)

router = APIRouter()
CHUNK = 4 << 20  # a blob is read and sent in blocks of this size
UPLOAD_IDLE_S = 3600.0
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def scope_of(method: str, path: str) -> str | None:
    """The scope a request needs: ``pull`` to read the store, ``publish`` to send to it,
    ``generate`` for everything else, None for paths any key may use (``/metrics``)."""
    if path.startswith("/v1/store/"):
        return "pull" if method in ("GET", "HEAD") else "publish"
    if path == "/metrics":
        return None
    return "generate"


def streams_body(method: str, path: str) -> bool:
    """Whether the route reads its own body in a stream with its own cap (blob uploads)."""
    return method == "PUT" and path.startswith("/v1/store/uploads/")


def missing_scope_error(scope: str, method: str, path: str) -> ForbiddenError:
    return ForbiddenError(
        f"This key lacks the '{scope}' scope that {method} {path} needs. Make a key with it: "
        f"`workbench keys create NAME --scope {scope}` (scopes: generate, pull, publish; several "
        "with commas), and send that one."
    )


def _index(request: Request) -> StoreIndex:
    return request.app.state.store_index


ENTRY_ERRORS = (UnknownEntryError, EntryExistsError, DiskSpaceError, InvalidInputError, CardError,
                UnsupportedModelError, IntegrityError)


def _map(err: Exception) -> Exception:
    """The HTTP error for an entry-layer error."""
    if isinstance(err, UnknownEntryError):
        return NotFoundError(str(err))
    if isinstance(err, EntryExistsError):
        return ConflictError(str(err))
    if isinstance(err, DiskSpaceError):
        return NoSpaceError(str(err))
    if isinstance(err, IntegrityError):
        return BlobMismatchError(str(err))
    return BadEntryError(str(err))


def _json_error(err: ServeError, headers: dict | None = None, **extra) -> JSONResponse:
    """The app's error body, with ``extra`` keys in it and beside it (``missing``)."""
    body = {"error": {"message": str(err), "type": err.type, "param": None, "code": err.code, **extra}, **extra}
    return JSONResponse(body, status_code=err.status, headers=headers)


# --- pull -------------------------------------------------------------------------------------

@router.get("/v1/store/index")
async def index(request: Request) -> dict:
    return {"entries": await run_in_threadpool(_index(request).entries)}


@router.get("/v1/store/entries/{kind}/{entry_id}")
async def entry(kind: str, entry_id: str, request: Request) -> dict:
    try:
        return await run_in_threadpool(entries.read_entry, request.app.state.store, kind, entry_id)
    except UnknownEntryError as err:
        raise _map(err) from None


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single ``Range: bytes=`` header, None for the whole file (no
    header, or several ranges: the whole file is a valid answer). ``RangeError`` when it cannot
    be satisfied."""
    if not header:
        return None
    header = header.strip()
    if "," in header:
        return None
    m = _RANGE.match(header)
    if not m or (not m.group(1) and not m.group(2)):
        raise RangeError(f"Range {header!r} is not 'bytes=FIRST-[LAST]' or 'bytes=-SUFFIX'.", size)
    first, last = m.group(1), m.group(2)
    if not first:  # a suffix: the last N bytes
        n = int(last)
        if n == 0:
            raise RangeError(f"Range {header!r} asks for no bytes.", size)
        return max(size - n, 0), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        raise RangeError(f"Range {header!r} starts past the end of the {size:,}-byte file; ask from "
                         f"0 to {max(size - 1, 0)}.", size)
    return start, end


def _read_range(fh, start: int, end: int):
    fh.seek(start)
    left = end - start + 1
    try:
        while left > 0:
            block = fh.read(min(CHUNK, left))
            if not block:
                break
            left -= len(block)
            yield block
    finally:
        fh.close()


@router.get("/v1/store/blobs/{sha256}")
async def blob(sha256: str, request: Request):
    found = await run_in_threadpool(_index(request).blob, sha256) if SHA256_RE.match(sha256) else None
    fh = None
    if found is not None:
        try:
            fh = open(found[0], "rb")
        except OSError:
            fh = None
    if fh is None or os.fstat(fh.fileno()).st_size != found[1]:
        if fh is not None:
            fh.close()
        raise NotFoundError(f"This store holds no file with sha256 {sha256}. Read the entry again "
                            "(GET /v1/store/entries/KIND/ID): it may have been reinstalled.")
    size = found[1]
    headers = {"ETag": f'"{sha256}"', "Accept-Ranges": "bytes"}
    try:
        wanted = parse_range(request.headers.get("range"), size)
    except RangeError as err:
        fh.close()
        return _json_error(err, headers={**headers, "Content-Range": f"bytes */{size}"})
    if wanted is None:
        headers["Content-Length"] = str(size)
        return StreamingResponse(_read_range(fh, 0, size - 1), media_type="application/octet-stream",
                                 headers=headers)
    start, end = wanted
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1)
    return StreamingResponse(_read_range(fh, start, end), status_code=206,
                             media_type="application/octet-stream", headers=headers)


# --- publish ----------------------------------------------------------------------------------

@dataclass
class Upload:
    token: str
    kind: str
    entry_id: str
    card: str | None
    manifest: dict
    sizes: dict[str, int]  # sha256 -> declared size
    folder: Path
    received: dict[str, Path] = field(default_factory=dict)
    arriving: set[str] = field(default_factory=set)  # sha256s being PUT now
    committing: bool = False
    touched: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)  # guards the three fields above

    def begin(self, sha256: str | None) -> None:
        """Mark a PUT of ``sha256`` (or, with None, the commit) as running; ``ConflictError`` when
        it clashes with one running (the same file twice, or a commit during a PUT)."""
        with self.lock:
            if self.committing or (sha256 is None and self.arriving) or sha256 in self.arriving:
                raise ConflictError("Another request of this upload is running (a PUT of the same file, "
                                    "or a commit while files still arrive); wait for it to answer, then retry.")
            if sha256 is None:
                self.committing = True
            else:
                self.arriving.add(sha256)

    def end(self, sha256: str | None) -> None:
        with self.lock:
            if sha256 is None:
                self.committing = False
            else:
                self.arriving.discard(sha256)

    @property
    def busy(self) -> bool:
        with self.lock:
            return self.committing or bool(self.arriving)


class Uploads:
    """The pushes in progress of one server, each with its folder under the store's staging."""

    def __init__(self, store):
        self.store = store
        self._lock = threading.Lock()
        self._open: dict[str, Upload] = {}

    def open(self, kind: str, entry_id: str, card, manifest: dict, index: StoreIndex) -> tuple[Upload, list[str]]:
        entries.check_kind(kind)
        entries._valid_id(entry_id)
        files = entries.check_manifest(manifest, kind)
        if card is not None and not isinstance(card, str):
            raise entries.BadManifestError("'card' must be the card's TOML text, or null for a built-in one.")
        taken = entries.id_taken(self.store, kind, entry_id)
        if taken:
            raise EntryExistsError(f"Cannot receive '{entry_id}': {taken}. Send it under another id "
                                   f"(`workbench store push {entry_id} --as NEW_ID`).")
        entries.check_card(self.store, kind, entry_id, card)
        entries.check_disk(self.store, sum(m["size"] for m in files.values()))
        sizes = {m["sha256"]: m["size"] for m in files.values()}
        missing = sorted(sha for sha in sizes if index.blob(sha) is None)
        folder = Path(tempfile.mkdtemp(prefix=f"upload-{os.getpid()}-", dir=self.store.staging_dir))
        up = Upload(secrets.token_urlsafe(24), kind, entry_id, card, dict(manifest), sizes, folder)
        with self._lock:
            self._open[up.token] = up
        return up, missing

    def get(self, token: str) -> Upload:
        with self._lock:
            up = self._open.get(token)
        if up is None:
            raise NotFoundError("No upload with this token: it was committed, or left idle and deleted. "
                                "Start the push again (POST /v1/store/uploads).")
        up.touched = time.monotonic()
        return up

    def close(self, token: str) -> None:
        with self._lock:
            up = self._open.pop(token, None)
        if up is not None:
            shutil.rmtree(up.folder, ignore_errors=True)

    def expire(self, idle_s: float = UPLOAD_IDLE_S) -> None:
        now = time.monotonic()
        with self._lock:
            old = [t for t, up in self._open.items() if now - up.touched > idle_s and not up.busy]
        for token in old:
            self.close(token)


def _uploads(request: Request) -> Uploads:
    """The server's uploads, with those idle past ``UPLOAD_IDLE_S`` deleted first (so an
    abandoned push's folder goes at the next upload request of any kind)."""
    uploads = request.app.state.uploads
    uploads.expire()
    return uploads


@router.post("/v1/store/uploads", status_code=201)
async def open_upload(request: Request):
    try:
        body = await request.json()
    except ValueError:
        raise BadEntryError("The body is not JSON: send {\"kind\", \"id\", \"card\", \"manifest\"}.") from None
    if not isinstance(body, dict):
        raise BadEntryError("The body must be a JSON object {\"kind\", \"id\", \"card\", \"manifest\"}.")
    try:
        up, missing = await run_in_threadpool(
            _uploads(request).open, body.get("kind"), body.get("id"), body.get("card"), body.get("manifest"),
            _index(request))
    except ENTRY_ERRORS as err:
        raise _map(err) from None
    return JSONResponse({"upload": up.token, "missing": missing}, status_code=201)


def _write(fh, digest, block: bytes) -> None:
    fh.write(block)
    digest.update(block)


@router.put("/v1/store/uploads/{token}/blobs/{sha256}", status_code=204)
async def put_blob(token: str, sha256: str, request: Request):
    up = _uploads(request).get(token)
    if sha256 not in up.sizes:
        raise NotFoundError(f"The upload of '{up.entry_id}' has no file with sha256 {sha256}; send only "
                            "the files its manifest lists.")
    declared = up.sizes[sha256]
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > declared:
        raise BlobTooLargeError(f"The body is {int(length):,} bytes, but the manifest declares {declared:,} "
                                f"for {sha256[:16]}...; send the file the manifest describes.")
    up.begin(sha256)
    try:
        if sha256 in up.received:
            return Response(status_code=204)
        tmp = up.folder / f".{sha256}.part"
        digest, done, buffer = hashlib.sha256(), 0, []
        try:
            with open(tmp, "wb") as fh:
                async for chunk in request.stream():
                    done += len(chunk)
                    if done > declared:
                        raise BlobTooLargeError(f"The file {sha256[:16]}... passed the {declared:,} bytes its "
                                                "manifest declares; nothing was kept. Send the right file.")
                    buffer.append(chunk)
                    if sum(map(len, buffer)) >= CHUNK:
                        await run_in_threadpool(_write, fh, digest, b"".join(buffer))
                        buffer = []
                if buffer:
                    await run_in_threadpool(_write, fh, digest, b"".join(buffer))
                fh.flush()
            if done != declared or digest.hexdigest() != sha256:
                raise BlobMismatchError(
                    f"The bytes received ({done:,}) do not hash to {sha256[:16]}... (size declared "
                    f"{declared:,}); nothing was kept. The file changed or was damaged on the way: send it again.")
            final = up.folder / sha256
            await run_in_threadpool(publish, tmp, final)  # the store's one rename into place
            up.received[sha256] = final
        except OSError as err:
            if err.errno == 28:  # ENOSPC
                raise NoSpaceError(f"The disk under {up.folder.parent.parent} filled up while receiving a file; "
                                   "nothing was kept. Free space on that machine and push again.") from None
            raise
        finally:
            tmp.unlink(missing_ok=True)
    finally:
        up.end(sha256)
    return Response(status_code=204)


@router.post("/v1/store/uploads/{token}/commit", status_code=201)
async def commit_upload(token: str, request: Request):
    uploads = _uploads(request)
    up = uploads.get(token)
    up.begin(None)
    try:
        result = await run_in_threadpool(entries.receive_entry, request.app.state.store, up.kind, up.entry_id,
                                         up.card, up.manifest, dict(up.received), _index(request))
    except MissingBlobsError as err:
        return _json_error(MissingError(str(err), err.missing), missing=err.missing)
    except EntryExistsError as err:
        uploads.close(token)
        raise _map(err) from None
    except ENTRY_ERRORS as err:
        raise _map(err) from None
    finally:
        up.end(None)
    uploads.close(token)
    return JSONResponse(result, status_code=201)
