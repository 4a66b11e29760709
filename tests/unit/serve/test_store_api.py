"""The store over HTTP: two servers on loopback with separate store roots and tiny models.
Index, entries, blobs with Range and ETag; pushes (uploads, checked blobs, commit whole or not at
all, id clashes); hostile manifests refused before any byte; --store-only loads no model."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from workbench.serve.keys import KeyStore
from workbench.store import Store, entries

TIMEOUT = 30
SHA = "b" * 64


@pytest.fixture
def other(tmp_path):
    """A second server on loopback, store-only, over an empty store root of its own."""
    from workbench.serve.server import ServerThread, build_app

    store = Store(tmp_path / "other-home")
    app, registry = build_app(store, store_only=True)
    server = ServerThread(app).start()
    server.store, server.app = store, app
    server.key = KeyStore(store.home).create("team", "pull,publish")
    yield server
    server.stop()


@pytest.fixture
def origin(start_server, tiny_store):
    server = start_server(["tiny-gpt2"])
    server.store = tiny_store
    server.key = KeyStore(tiny_store.home).create("puller", "pull,publish,generate")
    return server


def _h(server, **extra):
    return {"Authorization": f"Bearer {server.key}", **extra}


def _get(server, path, **headers):
    return requests.get(server.url + path, headers=_h(server, **headers), timeout=TIMEOUT)


def _open(server, kind, entry_id, card, manifest):
    return requests.post(server.url + "/v1/store/uploads", headers=_h(server), timeout=TIMEOUT,
                         json={"kind": kind, "id": entry_id, "card": card, "manifest": manifest})


def push(src: Store, server, kind: str, entry_id: str, new_id: str | None = None) -> requests.Response:
    """What a push does, in the protocol's three steps."""
    entry = entries.read_entry(src, kind, entry_id)
    r = _open(server, kind, new_id or entry_id, entry["card"], entry["manifest"])
    assert r.status_code == 201, r.text
    token, missing = r.json()["upload"], set(r.json()["missing"])
    folder = entries.entry_dir(src, kind, entry_id)
    for rel, meta in entries.transfer_files(entry["manifest"]).items():
        if meta["sha256"] in missing:
            with open(folder / rel, "rb") as fh:
                put = requests.put(f"{server.url}/v1/store/uploads/{token}/blobs/{meta['sha256']}",
                                   headers=_h(server), data=fh, timeout=TIMEOUT)
            assert put.status_code == 204, put.text
            missing.discard(meta["sha256"])
    return requests.post(f"{server.url}/v1/store/uploads/{token}/commit", headers=_h(server), timeout=TIMEOUT)


def test_index_lists_models_datasets_and_apps(origin, tiny_store, tmp_path):
    from tests.unit.store.test_entries import make_app, make_dataset

    make_dataset(tiny_store, tmp_path)
    make_app(tiny_store)
    r = _get(origin, "/v1/store/index")
    assert r.status_code == 200
    got = {(e["kind"], e["id"]) for e in r.json()["entries"]}
    assert {("model", "tiny-gpt2"), ("model", "tiny-llama"), ("dataset", "notes"), ("app", "helper")} <= got
    one = _get(origin, "/v1/store/entries/model/tiny-gpt2").json()
    assert set(one) == {"kind", "id", "builtin", "card", "digest", "manifest", "size_bytes"}
    assert one["digest"] == tiny_store.fingerprint("tiny-gpt2")
    for path in ("/v1/store/entries/model/nope", "/v1/store/entries/widget/tiny-gpt2", "/v1/store/entries/model/..%2Fx"):
        r = _get(origin, path)
        assert r.status_code == 404 and r.json()["error"]["message"], path


def test_blobs_with_range_and_etag(origin, tiny_store):
    meta = tiny_store.manifest("tiny-gpt2")["files"]["model.safetensors"]
    data = (tiny_store.models_dir / "tiny-gpt2" / "model.safetensors").read_bytes()
    path = f"/v1/store/blobs/{meta['sha256']}"
    whole = _get(origin, path)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["ETag"] == f'"{meta["sha256"]}"' and whole.headers["Accept-Ranges"] == "bytes"
    part = _get(origin, path, Range="bytes=10-99")
    assert part.status_code == 206 and part.content == data[10:100]
    assert part.headers["Content-Range"] == f"bytes 10-99/{len(data)}"
    tail = _get(origin, path, Range="bytes=100-")
    assert tail.status_code == 206 and tail.content == data[100:]
    suffix = _get(origin, path, Range="bytes=-7")
    assert suffix.status_code == 206 and suffix.content == data[-7:]
    past = _get(origin, path, Range=f"bytes={len(data)}-")
    assert past.status_code == 416 and past.headers["Content-Range"] == f"bytes */{len(data)}"
    assert "past the end" in past.json()["error"]["message"]
    assert _get(origin, f"/v1/store/blobs/{SHA}").status_code == 404
    assert _get(origin, "/v1/store/blobs/../../keys.json").status_code == 404


def test_push_a_model_to_another_server_then_pull_it_back(origin, other, tiny_store):
    r = push(tiny_store, other, "model", "tiny-gpt2")
    assert r.status_code == 201, r.text
    assert r.json()["digest"] == tiny_store.fingerprint("tiny-gpt2")
    assert other.store.verify("tiny-gpt2").ok
    assert list(other.store.staging_dir.iterdir()) == []  # the upload's folder went with the commit
    listed = {e["id"] for e in _get(other, "/v1/store/index").json()["entries"]}
    assert listed == {"tiny-gpt2"}
    back = _get(other, "/v1/store/entries/model/tiny-gpt2").json()
    for rel, meta in entries.transfer_files(back["manifest"]).items():
        blob = _get(other, f"/v1/store/blobs/{meta['sha256']}")
        assert hashlib.sha256(blob.content).hexdigest() == meta["sha256"], rel


def test_a_clash_of_ids_is_409_until_renamed(origin, other, tiny_store):
    assert push(tiny_store, other, "model", "tiny-gpt2").status_code == 201
    entry = entries.read_entry(tiny_store, "model", "tiny-gpt2")
    r = _open(other, "model", "tiny-gpt2", entry["card"], entry["manifest"])
    assert r.status_code == 409 and "--as NEW_ID" in r.json()["error"]["message"]
    r = _open(other, "model", "gpt2-b", entry["card"], entry["manifest"])
    assert r.status_code == 201 and r.json()["missing"] == []  # the server holds every file already
    done = requests.post(f"{other.url}/v1/store/uploads/{r.json()['upload']}/commit", headers=_h(other), timeout=TIMEOUT)
    assert done.status_code == 201 and done.json()["id"] == "gpt2-b"
    assert other.store.card("gpt2-b").id == "gpt2-b"


def test_a_commit_racing_another_for_the_id_gets_409(origin, other, tiny_store):
    entry = entries.read_entry(tiny_store, "model", "tiny-gpt2")
    first = _open(other, "model", "tiny-gpt2", entry["card"], entry["manifest"]).json()["upload"]
    assert push(tiny_store, other, "model", "tiny-gpt2").status_code == 201
    r = requests.post(f"{other.url}/v1/store/uploads/{first}/commit", headers=_h(other), timeout=TIMEOUT)
    assert r.status_code == 409 and "--as NEW_ID" in r.json()["error"]["message"]


def test_a_corrupted_blob_is_refused_and_nothing_kept(other, tiny_store):
    entry = entries.read_entry(tiny_store, "model", "tiny-gpt2")
    r = _open(other, "model", "tiny-gpt2", entry["card"], entry["manifest"])
    token = r.json()["upload"]
    meta = entry["manifest"]["files"]["config.json"]
    bad = b"x" * meta["size"]
    put = requests.put(f"{other.url}/v1/store/uploads/{token}/blobs/{meta['sha256']}", headers=_h(other),
                       data=bad, timeout=TIMEOUT)
    assert put.status_code == 422 and "send it again" in put.json()["error"]["message"]
    upload_dirs = list(other.store.staging_dir.iterdir())
    assert len(upload_dirs) == 1 and list(upload_dirs[0].iterdir()) == []
    big = requests.put(f"{other.url}/v1/store/uploads/{token}/blobs/{meta['sha256']}", headers=_h(other),
                       data=bad + b"more", timeout=TIMEOUT)
    assert big.status_code == 413
    commit = requests.post(f"{other.url}/v1/store/uploads/{token}/commit", headers=_h(other), timeout=TIMEOUT)
    assert commit.status_code == 409
    body = commit.json()
    assert meta["sha256"] in body["missing"] and meta["sha256"] in body["error"]["missing"]
    assert not (other.store.models_dir / "tiny-gpt2").exists()
    assert _get(other, "/health").status_code == 200  # still serving


def test_an_interrupted_push_leaves_nothing(other, tiny_store, monkeypatch):
    from workbench.serve import store_api

    entry = entries.read_entry(tiny_store, "model", "tiny-gpt2")
    token = _open(other, "model", "tiny-gpt2", entry["card"], entry["manifest"]).json()["upload"]
    meta = entry["manifest"]["files"]["config.json"]
    config = (tiny_store.models_dir / "tiny-gpt2" / "config.json").read_bytes()
    put = requests.put(f"{other.url}/v1/store/uploads/{token}/blobs/{meta['sha256']}", headers=_h(other),
                       data=config, timeout=TIMEOUT)
    assert put.status_code == 204
    other.app.state.uploads.expire(idle_s=0)  # the pusher went away
    assert list(other.store.staging_dir.iterdir()) == []
    assert not (other.store.models_dir / "tiny-gpt2").exists()
    r = requests.post(f"{other.url}/v1/store/uploads/{token}/commit", headers=_h(other), timeout=TIMEOUT)
    assert r.status_code == 404 and "Start the push again" in r.json()["error"]["message"]
    assert store_api.UPLOAD_IDLE_S > 0


HOSTILE = [
    ({"files": {"../../evil.sh": {"size": 1, "sha256": SHA}, "config.json": {"size": 1, "sha256": SHA}}}, "'..'"),
    ({"files": {"/etc/cron.d/x": {"size": 1, "sha256": SHA}, "config.json": {"size": 1, "sha256": SHA}}}, "absolute"),
    ({"files": {"a\\..\\b": {"size": 1, "sha256": SHA}, "config.json": {"size": 1, "sha256": SHA}}}, "backslash"),
    ({"files": {"config.json": {"size": -5, "sha256": SHA}}}, "size"),
    ({"files": {"config.json": {"size": 1, "sha256": "nope"}}}, "sha256"),
    ({"nofiles": True}, "'files'"),
]


@pytest.mark.parametrize("manifest,word", HOSTILE)
def test_hostile_manifests_are_refused_before_any_byte(other, manifest, word):
    r = _open(other, "model", "evil", None, manifest)
    assert r.status_code == 400 and word in r.json()["error"]["message"]
    assert list(other.store.staging_dir.iterdir()) == []


def test_bad_ids_and_kinds_are_refused(other):
    manifest = {"files": {"config.json": {"size": 1, "sha256": SHA}}}
    assert _open(other, "model", "../x", None, manifest).status_code == 400
    assert _open(other, "widget", "x", None, manifest).status_code == 404
    r = _open(other, "model", "unknown-builtin", None, manifest)  # no card, and no such built-in here
    assert r.status_code == 400


def test_an_entry_too_big_for_the_disk_is_refused_before_any_byte(other, tiny_store):
    card = entries.read_entry(tiny_store, "model", "tiny-gpt2")["card"]
    manifest = {"files": {"config.json": {"size": 1, "sha256": SHA}, "model.safetensors": {"size": 10**15, "sha256": "c" * 64}}}
    r = _open(other, "model", "huge", card, manifest)
    assert r.status_code == 507 and "Free space" in r.json()["error"]["message"]
    assert list(other.store.staging_dir.iterdir()) == []


def test_push_an_app_with_its_knowledge(other, tiny_store):
    from tests.unit.store.test_entries import make_app

    make_app(tiny_store)
    r = push(tiny_store, other, "app", "helper")
    assert r.status_code == 201, r.text
    folder = other.store.home / "apps" / "helper"
    assert (folder / "knowledge" / "handbook.md").read_text() == (
        tiny_store.home / "apps" / "helper" / "knowledge" / "handbook.md").read_text()
    assert r.json()["digest"] == entries.read_entry(tiny_store, "app", "helper")["digest"]
    listed = _get(other, "/v1/store/entries/app/helper").json()
    assert listed["card"].startswith('id = "helper"')


def test_a_blob_put_is_streamed_not_capped_by_the_body_limit(tiny_store, tmp_path):
    """The guard's body limit does not apply to blob uploads (they have the manifest's cap)."""
    from workbench.serve.server import ServerThread, build_app

    store = Store(tmp_path / "small-limit")
    app, _ = build_app(store, store_only=True, max_body_bytes=8000)
    key = KeyStore(store.home).create("p", "publish,pull")
    entry = entries.read_entry(tiny_store, "model", "tiny-gpt2")
    with ServerThread(app) as server:
        server.key = key
        assert push(tiny_store, server, "model", "tiny-gpt2").status_code == 201
    assert store.verify("tiny-gpt2").ok and max(m["size"] for m in entry["manifest"]["files"].values()) > 8000


def test_store_only_serves_no_model(other):
    r = _get(other, "/v1/models")
    assert r.status_code in (403, 404)
    assert other.app.state.registry is None


def test_store_only_cli_server_never_loads_torch(tiny_store, tmp_path):
    """`workbench serve --store-only` in a process of its own: serves the index, and neither
    torch nor any model is in its memory map."""
    from workbench.serve.server import free_port

    key = KeyStore(tiny_store.home).create("cli", "pull")
    port = free_port()
    env = dict(os.environ, WORKBENCH_HOME=str(tiny_store.home), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "serve", "--store-only", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if requests.get(url + "/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.1)
        r = requests.get(url + "/v1/store/index", headers={"Authorization": f"Bearer {key}"}, timeout=TIMEOUT)
        assert r.status_code == 200 and "tiny-gpt2" in {e["id"] for e in r.json()["entries"]}
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert "libtorch" not in maps and "safetensors" not in {Path(line.split()[-1]).name for line in maps.splitlines() if "/" in line}
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(20)


def test_an_abandoned_push_goes_at_the_next_upload_request(other, tiny_store, monkeypatch):
    from workbench.serve import store_api

    entry = entries.read_entry(tiny_store, "model", "tiny-gpt2")
    token = _open(other, "model", "tiny-gpt2", entry["card"], entry["manifest"]).json()["upload"]
    assert list(other.store.staging_dir.iterdir())  # its folder
    monkeypatch.setattr(store_api.Uploads.expire, "__defaults__", (0.0,))  # every upload is idle now
    r = requests.post(f"{other.url}/v1/store/uploads/not-a-token/commit", headers=_h(other), timeout=TIMEOUT)
    assert r.status_code == 404  # any upload request sweeps the idle ones first
    assert list(other.store.staging_dir.iterdir()) == []
    r = requests.post(f"{other.url}/v1/store/uploads/{token}/commit", headers=_h(other), timeout=TIMEOUT)
    assert r.status_code == 404
