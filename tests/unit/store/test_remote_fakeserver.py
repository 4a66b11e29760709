"""A small stdlib HTTP server of the ``/v1/store/*`` protocol over a store root, for the pull and
push tests, with faults to inject: a blob whose bytes are corrupted, a blob that stalls after
some bytes (so the test can SIGKILL the server mid-transfer), and a log of the bytes each blob
request sent. It serves with the server side's own helpers (``workbench.store.entries``), so
only the HTTP layer is the test's. Binds 127.0.0.1; run in a thread (``serving``) or as a
process: ``python test_remote_fakeserver.py ROOT PORT_FILE CONFIG_JSON``.

The tests at the bottom check the fake itself (auth, Range)."""
from __future__ import annotations

import hashlib
import json
import re
import secrets
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SCOPE_OF = {"GET": "pull", "POST": "publish", "PUT": "publish"}


def make_handler(store, config: dict):
    from workbench.store import entries

    index = entries.StoreIndex(store)
    keys: dict = config.get("keys", {})  # key -> scopes
    corrupt = set(config.get("corrupt", []))
    stall_after = config.get("stall_after")  # bytes of each blob, then hang
    log_path = config.get("log")
    uploads_dir = Path(tempfile.mkdtemp(prefix="uploads-", dir=store.home))
    uploads: dict[str, dict] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _send(self, status: int, body: dict | None = None, headers: dict | None = None):
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str):
            self._send(status, {"error": {"message": message, "type": "store_error", "code": None}})

        def _auth(self) -> bool:
            if self.path == "/health":
                return True
            key = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if key not in keys:
                self._error(401, "Missing or unknown key.")
                return False
            scope = SCOPE_OF[self.command]
            if scope not in keys[key]:
                self._error(403, f"This key lacks the '{scope}' scope; make one with "
                                 f"`workbench keys create NAME --scope {scope}`.")
                return False
            return True

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))

        def do_GET(self):
            if not self._auth():
                return
            if self.path == "/health":
                return self._send(200, {"status": "ok"})
            if self.path == "/v1/store/index":
                return self._send(200, {"entries": index.entries()})
            m = re.fullmatch(r"/v1/store/entries/(\w+)/([^/]+)", self.path)
            if m:
                try:
                    return self._send(200, entries.read_entry(store, m[1], m[2]))
                except entries.UnknownEntryError as err:
                    return self._error(404, str(err))
            m = re.fullmatch(r"/v1/store/blobs/([0-9a-f]{64})", self.path)
            if m:
                return self._blob(m[1])
            self._error(404, "no such route")

        def _blob(self, sha: str):
            found = index.blob(sha)
            if found is None:
                return self._error(404, f"no blob {sha}")
            path, size = found
            start = 0
            rng = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if rng:
                start = int(rng[1])
            data = path.read_bytes()[start:]
            if sha in corrupt:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            self.send_response(206 if rng else 200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("ETag", f'"{sha}"')
            self.send_header("Accept-Ranges", "bytes")
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            self.end_headers()
            sent = len(data)
            if stall_after is not None and len(data) > stall_after:
                self.wfile.write(data[:stall_after])
                self.wfile.flush()
                sent = stall_after
                self._log(sha, start, sent)
                time.sleep(3600)  # the test kills this process now
            self.wfile.write(data)
            self._log(sha, start, sent)

        def _log(self, sha: str, start: int, sent: int):
            if log_path:
                with lock, open(log_path, "a") as fh:
                    fh.write(json.dumps({"sha": sha, "start": start, "sent": sent}) + "\n")

        def do_POST(self):
            if not self._auth():
                return
            body = json.loads(self._body() or b"{}")
            if self.path == "/v1/store/uploads":
                taken = entries.id_taken(store, body["kind"], body["id"])
                if taken:
                    return self._error(409, f"Cannot receive '{body['id']}': {taken}. Use --as NEW_ID.")
                files = entries.check_manifest(body["manifest"], body["kind"])
                token = secrets.token_hex(8)
                uploads[token] = {**body, "blobs": {}}
                missing = sorted({m["sha256"] for m in files.values() if index.blob(m["sha256"]) is None})
                return self._send(201, {"upload": token, "missing": missing})
            m = re.fullmatch(r"/v1/store/uploads/(\w+)/commit", self.path)
            if m and m[1] in uploads:
                up = uploads[m[1]]
                try:
                    entry = entries.receive_entry(store, up["kind"], up["id"], up["card"], up["manifest"],
                                                  up["blobs"], local=index)
                except entries.MissingBlobsError as err:
                    return self._error(409, f"{err} missing: {err.missing}")
                except entries.EntryExistsError as err:
                    return self._error(409, str(err))
                return self._send(201, entry)
            self._error(404, "no such upload")

        def do_PUT(self):
            if not self._auth():
                return
            m = re.fullmatch(r"/v1/store/uploads/(\w+)/blobs/([0-9a-f]{64})", self.path)
            if not m or m[1] not in uploads:
                self._body()
                return self._error(404, "no such upload")
            data = self._body()
            if hashlib.sha256(data).hexdigest() != m[2]:
                return self._error(422, "The bytes do not match their sha256; nothing was kept.")
            path = uploads_dir / m[2]
            path.write_bytes(data)
            uploads[m[1]]["blobs"][m[2]] = path
            self._send(204)

    return Handler


@contextmanager
def serving(home, config: dict):
    """A fake store server over the store root ``home`` in a thread; yields its URL."""
    from workbench.store import Store

    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(Store(home), config))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def main(root: str, port_file: str, config: str) -> None:
    from workbench.store import Store

    cfg = json.loads(config)
    server = ThreadingHTTPServer(("127.0.0.1", cfg.get("port", 0)), make_handler(Store(root), cfg))
    server.daemon_threads = True
    Path(port_file + ".tmp").write_text(str(server.server_address[1]))
    Path(port_file + ".tmp").rename(port_file)
    server.serve_forever()


if __name__ == "__main__":
    main(*sys.argv[1:4])


# --- the fake's own checks ----------------------------------------------------------------

def test_fake_server_checks_keys_and_serves_ranges(tmp_path, tiny_store):
    blob = next(iter(tiny_store.manifest("tiny-gpt2")["files"].values()))
    cfg = {"keys": {"k-pull": ["pull"], "k-gen": ["generate"]}}
    with serving(tiny_store.home, cfg) as url:
        def get(path, key, headers=None):
            req = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {key}", **(headers or {})})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.status, r.read()
            except urllib.error.HTTPError as err:
                return err.code, err.read()

        assert get("/v1/store/index", "nope")[0] == 401
        assert get("/v1/store/index", "k-gen")[0] == 403
        status, body = get(f"/v1/store/blobs/{blob['sha256']}", "k-pull", {"Range": "bytes=5-"})
        assert status == 206 and len(body) == blob["size"] - 5
