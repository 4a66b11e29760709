"""Pulling entries from another store over loopback: two store roots, a server over one
(``test_remote_fakeserver``, which serves with the server side's own helpers), tiny models."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_remote_fakeserver import serving

from workbench.errors import (
    DiskSpaceError,
    IntegrityError,
    UnknownModelError,
    WorkbenchError,
)
from workbench.store import Store
from workbench.store.remote import (
    RemoteAuthError,
    RemoteEntry,
    RemoteScopeError,
    RemoteUnavailableError,
    StoreClient,
)
from workbench.store.transfer import RemoteStore, partial_dir, pull

KEY = "wb-test-pull"
KEYS = {"keys": {KEY: ["pull", "generate"], "wb-gen-only": ["generate"]}}
HERE = Path(__file__).resolve().parent


@pytest.fixture
def local(tmp_path):
    return Store(tmp_path / "local-home")


def _log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_download_model_from_a_url_pulls_and_generates(tiny_store, local, tmp_path):
    log = tmp_path / "sent.jsonl"
    with serving(tiny_store.home, {**KEYS, "log": str(log)}) as url:
        remote = Store(local.home, url=url, api_key=KEY)
        assert isinstance(remote, RemoteStore)
        local = remote.local  # the local store it pulls into (its own instance of that root)
        assert local.home == tmp_path / "local-home"
        assert {("model", "tiny-llama"), ("model", "tiny-gpt2")} <= {(e.kind, e.id) for e in remote.list()}
        model = remote.download_model("tiny-llama")
        out = model.generate("hello", max_new_tokens=3, temperature=0)
        assert out.text is not None
        origin_files = tiny_store.manifest("tiny-llama")["files"]
        pulled = local.manifest("tiny-llama")
        assert pulled["files"] == origin_files
        assert pulled["origin"]["url"] == url and pulled["origin"]["digest"] == tiny_store.fingerprint("tiny-llama")
        assert local.card("tiny-llama").custom  # the user card came with the entry
        assert local.verify("tiny-llama", check_origin=True, api_key=KEY).origin.startswith("the same as its origin")
        sent = len(_log(log))
        remote.pull("tiny-llama")  # already here, the same: nothing fetched again
        assert len(_log(log)) == sent
        assert not any(partial_dir(local).glob("[0-9a-f]*"))  # the partial bytes went with the install


def test_files_held_locally_are_not_fetched_again(tiny_store, tiny_model_dirs, local, tmp_path):
    tiny_store.add("tiny-llama-copy", local_dir=tiny_model_dirs["llama"])
    log = tmp_path / "sent.jsonl"
    with serving(tiny_store.home, {**KEYS, "log": str(log)}) as url:
        remote = RemoteStore(url, KEY, local=local)
        remote.pull("tiny-llama")
        before = len(_log(log))
        assert before > 0
        remote.pull("tiny-llama-copy")  # the same files under another id
        assert len(_log(log)) == before
    assert local.verify("tiny-llama-copy").ok


def test_a_corrupted_file_is_refused_and_nothing_is_installed(tiny_store, local):
    files = tiny_store.manifest("tiny-llama")["files"]
    bad = files["model.safetensors"]["sha256"]
    with serving(tiny_store.home, {**KEYS, "corrupt": [bad]}) as url:
        with pytest.raises(IntegrityError, match="do not match its sha256"):
            RemoteStore(url, KEY, local=local).pull("tiny-llama")
    assert not (local.models_dir / "tiny-llama").exists()
    assert not (local.cards_dir / "tiny-llama.toml").exists()
    assert not (partial_dir(local) / bad).exists()  # bad bytes are dropped, not resumed from


def test_keys_scopes_and_unknown_ids_give_the_fix(tiny_store, local):
    with serving(tiny_store.home, KEYS) as url:
        with pytest.raises(RemoteAuthError, match="--key"):
            RemoteStore(url, "wb-wrong", local=local).list()
        with pytest.raises(RemoteScopeError, match="--scope pull"):
            RemoteStore(url, "wb-gen-only", local=local).pull("tiny-llama")
        with pytest.raises(UnknownModelError, match="workbench store list --from"):
            RemoteStore(url, KEY, local=local).pull("no-such-model")
        with pytest.raises(UnknownModelError):
            RemoteStore(url, KEY, local=local).pull("no-such-model", kind="model")
    with pytest.raises(RemoteUnavailableError, match="run the command again"):
        RemoteStore(url, KEY, local=local).list()  # the server is gone


def _entry_with(tiny_store, **manifest_changes) -> RemoteEntry:
    from workbench.store.entries import entry_digest

    manifest = {**tiny_store.manifest("tiny-llama"), **manifest_changes}
    return RemoteEntry("model", "tiny-llama", False, None, entry_digest(manifest["files"]), manifest, 1)


@pytest.mark.parametrize("rel", ["../escape.txt", "/etc/passwd", "a/../../b", "a\\b"])
def test_manifest_paths_outside_the_entry_are_refused_before_downloading(tiny_store, local, rel):
    files = dict(tiny_store.manifest("tiny-llama")["files"])
    files[rel] = {"size": 3, "sha256": "0" * 64}
    client = StoreClient("http://127.0.0.1:9")  # nothing listens: a download attempt would fail differently
    with pytest.raises(IntegrityError, match="refused"):
        pull(local, client, _entry_with(tiny_store, files=files))
    assert not (local.models_dir / "tiny-llama").exists()


def test_an_entry_that_does_not_fit_the_disk_is_refused_before_downloading(tiny_store, local, monkeypatch):
    import shutil

    from workbench.store import transfer

    real = shutil.disk_usage
    monkeypatch.setattr(transfer.shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    with serving(tiny_store.home, KEYS) as url:
        with pytest.raises(DiskSpaceError, match="nothing was downloaded"):
            RemoteStore(url, KEY, local=local).pull("tiny-llama")
    assert not any(partial_dir(local).glob("*")) if partial_dir(local).exists() else True


def test_a_local_entry_from_elsewhere_is_not_replaced(tiny_store, tiny_model_dirs, local):
    local.add("tiny-llama", local_dir=tiny_model_dirs["gpt2"])
    with serving(tiny_store.home, KEYS) as url:
        with pytest.raises(WorkbenchError, match="--force"):
            RemoteStore(url, KEY, local=local).pull("tiny-llama")
        assert local.manifest("tiny-llama").get("origin") is None
        RemoteStore(url, KEY, local=local).pull("tiny-llama", force=True)
    assert local.manifest("tiny-llama")["files"] == tiny_store.manifest("tiny-llama")["files"]


def test_two_pulls_of_one_id_at_once_install_it_once(tiny_store, local):
    errors = []
    with serving(tiny_store.home, KEYS) as url:
        def go():
            try:
                RemoteStore(url, KEY, local=Store(local.home)).pull("tiny-llama")
            except Exception as err:  # noqa: BLE001 (reported by the assertion below)
                errors.append(err)

        threads = [threading.Thread(target=go) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not errors
    local.catalog.refresh()  # another Store instance wrote the card
    assert local.verify("tiny-llama").ok


def test_verify_says_when_the_origin_changed(tiny_store, tiny_model_dirs, local):
    with serving(tiny_store.home, KEYS) as url:
        RemoteStore(url, KEY, local=local).pull("tiny-llama")
        tiny_store.discard("tiny-llama")
        tiny_store.add("tiny-llama", local_dir=tiny_model_dirs["gpt2"])  # another model under that id there
        report = local.verify("tiny-llama", check_origin=True, api_key=KEY)
    assert report.ok and "differs from its origin" in report.origin


def _start_server(home: Path, tmp_path: Path, config: dict) -> tuple[subprocess.Popen, str]:
    port_file = tmp_path / f"port-{time.monotonic_ns()}"
    proc = subprocess.Popen([sys.executable, str(HERE / "test_remote_fakeserver.py"), str(home), str(port_file),
                             json.dumps(config)], env={**os.environ, "PYTHONPATH": str(HERE.parents[2])})
    for _ in range(600):
        if port_file.exists():
            return proc, f"http://127.0.0.1:{port_file.read_text()}"
        assert proc.poll() is None, "the fake server did not start"
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the fake server did not start")


def test_a_pull_resumes_after_the_server_is_killed_mid_transfer(tiny_store, local, tmp_path):
    files = tiny_store.manifest("tiny-llama")["files"]
    total = sum(m["size"] for m in files.values())
    stall = 4096
    assert any(m["size"] > stall for m in files.values())
    log1 = tmp_path / "first.jsonl"
    proc, url = _start_server(tiny_store.home, tmp_path, {**KEYS, "stall_after": stall, "log": str(log1)})
    failure = []
    try:
        def go():
            try:
                RemoteStore(url, KEY, local=local, timeout=60).pull("tiny-llama")
            except WorkbenchError as err:
                failure.append(err)

        t = threading.Thread(target=go)
        t.start()
        for _ in range(600):  # until the server has sent the stalled blob's first bytes
            if any(r["sent"] == stall for r in _log(log1)):
                break
            time.sleep(0.05)
        stalled = next(r["sha"] for r in _log(log1) if r["sent"] == stall)
        os.kill(proc.pid, signal.SIGKILL)
        t.join(60)
    finally:
        proc.kill()
        proc.wait(10)
    assert failure and isinstance(failure[0], RemoteUnavailableError) and "resume" in str(failure[0])
    assert not (local.models_dir / "tiny-llama").exists()
    first_written = sum(p.stat().st_size for p in partial_dir(local).glob("[0-9a-f]*"))
    assert first_written >= stall

    log2 = tmp_path / "second.jsonl"
    with serving(tiny_store.home, {**KEYS, "log": str(log2)}) as url2:
        RemoteStore(url2, KEY, local=local).pull("tiny-llama")
    resent = _log(log2)
    assert {"sha": stalled, "start": stall, "sent": files_size(files, stalled) - stall} in resent
    assert sum(r["sent"] for r in resent) == total - first_written  # only what the killed pull had not written
    assert local.verify("tiny-llama").ok


def files_size(files: dict, sha: str) -> int:
    return next(m["size"] for m in files.values() if m["sha256"] == sha)


def test_a_model_installed_here_with_the_same_files_is_not_refused(tiny_store, tiny_model_dirs, tmp_path):
    """A classroom machine that installed the model itself: the one-liner with a URL just loads it."""
    from workbench.testing.stores import make_tiny_store

    local = make_tiny_store(tmp_path / "local-home", tiny_model_dirs)  # the same weights, no origin
    with serving(tiny_store.home, KEYS) as url:
        model = Store(local.home, url=url, api_key=KEY).download_model("tiny-llama")
    assert model.card.id == "tiny-llama" and local.verify("tiny-llama").ok


def _hand_made_app(home: Path, folder_id: str, card_id: str) -> None:
    """An app entry laid out as the contract says, made by hand (no apps package involved)."""
    import hashlib

    folder = home / "apps" / folder_id
    (folder / "knowledge").mkdir(parents=True)
    (folder / "app.toml").write_text(f'id = "{card_id}"\nbase_model = "tiny-gpt2"\n'
                                     '[knowledge]\nfiles = ["knowledge/notes.md"]\n')
    (folder / "knowledge" / "notes.md").write_text("# Notes\nOpens at 5:45.\n")
    files = {p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
             for p in folder.rglob("*") if p.is_file()}
    (folder / "manifest.json").write_text(json.dumps({"id": folder_id, "kind": "app", "files": files}))


def test_an_app_whose_id_is_a_model_here_is_refused_before_any_byte(tiny_store, tmp_path):
    remote = Store(tmp_path / "remote-home")
    _hand_made_app(remote.home, "tiny-llama", "tiny-llama")  # a model's id in the pulling store
    with serving(remote.home, KEYS) as url:
        with pytest.raises(WorkbenchError, match="apps and models share ids"):
            Store(tiny_store.home, url=url, api_key=KEY).pull("tiny-llama", kind="app")
    assert not (tiny_store.home / "apps" / "tiny-llama").exists()


def test_an_app_whose_card_names_another_id_is_refused(tiny_store, tmp_path):
    remote = Store(tmp_path / "remote-home")
    _hand_made_app(remote.home, "club", "someone-else")
    with serving(remote.home, KEYS) as url:
        with pytest.raises(WorkbenchError, match="came with a card for 'someone-else'"):
            Store(tiny_store.home, url=url, api_key=KEY).pull("club", kind="app")
    assert not (tiny_store.home / "apps" / "club").exists()
