"""Pushing entries to another store over loopback, and pulling them back on a third: a tiny
fine-tune-like user model and an app with knowledge; clashes, ``--as``, only missing files sent."""
from __future__ import annotations

import hashlib
import json

import pytest
from test_remote_fakeserver import serving

from workbench.cli import main
from workbench.common import atomic_write_json
from workbench.store import Store
from workbench.store.remote import RemoteClashError, RemoteScopeError
from workbench.store.transfer import RemoteStore

KEY = "wb-test-publish"
KEYS = {"keys": {KEY: ["pull", "publish"], "wb-pull-only": ["pull"]}}
TUNED = '[finetune]\nbase = "tiny-llama"\ndataset = "tiny"\nsteps = 2\ndate = "2025-01-01"\nperplexity_before = 9.0\nperplexity_after = 8.0\n'


def _count_uploads(monkeypatch) -> list[str]:
    from workbench.store.remote import StoreClient

    sent, real = [], StoreClient.upload_blob
    monkeypatch.setattr(StoreClient, "upload_blob", lambda self, token, sha, body, size: (sent.append(sha), real(self, token, sha, body, size))[1])
    return sent


def test_push_a_fine_tune_then_pull_it_on_a_third_store(tiny_store, tiny_model_dirs, tmp_path, monkeypatch):
    tiny_store.add("tiny-tuned", local_dir=tiny_model_dirs["llama"], extra_toml=TUNED)
    hub = Store(tmp_path / "hub-home")
    sent = _count_uploads(monkeypatch)
    with serving(hub.home, KEYS) as url:
        entry = RemoteStore(url, KEY, local=tiny_store).push("tiny-tuned")
        assert entry.id == "tiny-tuned" and entry.digest == tiny_store.fingerprint("tiny-tuned")
        assert len(sent) == len(tiny_store.manifest("tiny-tuned")["files"])
        with pytest.raises(RemoteClashError, match="--as"):
            RemoteStore(url, KEY, local=tiny_store).push("tiny-tuned")
        sent.clear()
        renamed = RemoteStore(url, KEY, local=tiny_store).push("tiny-tuned", as_id="tiny-tuned-2")
        assert renamed.id == "tiny-tuned-2" and sent == []  # every file was there already
        third = Store(tmp_path / "third-home")
        RemoteStore(url, KEY, local=third).pull("tiny-tuned-2")
    card = third.card("tiny-tuned-2")
    assert card.extra["finetune"]["base"] == "tiny-llama"
    assert third.manifest("tiny-tuned-2")["files"] == tiny_store.manifest("tiny-tuned")["files"]


def test_push_needs_the_publish_scope(tiny_store, tmp_path):
    with serving(tmp_path / "hub-home", KEYS) as url:
        with pytest.raises(RemoteScopeError, match="--scope publish"):
            RemoteStore(url, "wb-pull-only", local=tiny_store).push("tiny-gpt2")
    assert not (tmp_path / "hub-home" / "models" / "tiny-gpt2").exists()


def test_an_interrupted_push_leaves_nothing_there(tiny_store, tmp_path, monkeypatch):
    from workbench.store.remote import RemoteUnavailableError, StoreClient

    calls = []

    def dies(self, token, sha, body, size):
        calls.append(sha)
        if len(calls) == 2:
            raise RemoteUnavailableError("connection lost")
        return real(self, token, sha, body, size)

    real = StoreClient.upload_blob
    monkeypatch.setattr(StoreClient, "upload_blob", dies)
    with serving(tmp_path / "hub-home", KEYS) as url:
        with pytest.raises(RemoteUnavailableError):
            RemoteStore(url, KEY, local=tiny_store).push("tiny-gpt2")
        assert RemoteStore(url, KEY, local=tiny_store).list() == []
        monkeypatch.setattr(StoreClient, "upload_blob", real)
        RemoteStore(url, KEY, local=tiny_store).push("tiny-gpt2")  # and it can be pushed again
        assert [e.id for e in RemoteStore(url, KEY, local=tiny_store).list()] == ["tiny-gpt2"]


def _make_app(store: Store, app_id: str) -> None:
    """An app entry as the design contract lays it out (app.toml, knowledge/, manifest.json)."""
    root = store.home / "apps" / app_id
    (root / "knowledge").mkdir(parents=True)
    (root / "app.toml").write_text(f'id = "{app_id}"\nname = "Helper"\nbase_model = "tiny-llama"\n'
                                   'instructions = "Be brief."\n[knowledge]\nfiles = ["knowledge/notes.md"]\n')
    (root / "knowledge" / "notes.md").write_text("# Notes\nThe answer is 42.\n")
    files = {}
    for rel in ("app.toml", "knowledge/notes.md"):
        data = (root / rel).read_bytes()
        files[rel] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    atomic_write_json(root / "manifest.json", {"id": app_id, "kind": "app", "installed_at": "2025-01-01T00:00:00Z",
                                               "files": files})


def test_push_and_pull_an_app_with_its_knowledge(tiny_store, tmp_path, capsys, monkeypatch):
    _make_app(tiny_store, "helper-app")
    hub = tmp_path / "hub-home"
    with serving(hub, KEYS) as url:
        monkeypatch.setenv("WORKBENCH_HOME", str(tiny_store.home))
        assert main(["store", "push", "helper-app", "--to", url, "--key", KEY, "--as", "helper-2"]) == 0
        assert "pushed app helper-2" in capsys.readouterr().out
        third = tmp_path / "third-home"
        monkeypatch.setenv("WORKBENCH_HOME", str(third))
        monkeypatch.setenv("WORKBENCH_API_KEY", KEY)
        assert main(["store", "pull", "helper-2", "--from", url]) == 0
    app = third / "apps" / "helper-2"
    assert (app / "knowledge" / "notes.md").read_text() == "# Notes\nThe answer is 42.\n"
    assert 'id = "helper-2"' in (app / "app.toml").read_text()
    manifest = json.loads((app / "manifest.json").read_text())
    assert manifest["origin"]["kind"] == "app" and manifest["origin"]["id"] == "helper-2"
    capsys.readouterr()
    assert main(["store", "verify", "helper-2", "--kind", "app", "--offline"]) == 0  # WORKBENCH_HOME: third
    out = capsys.readouterr().out
    assert "the same as when pulled from" in out and "every file matches" in out
    (app / "knowledge" / "notes.md").write_text("# Notes\nThe answer is 43.\n")
    assert main(["store", "verify", "helper-2", "--kind", "app", "--offline"]) == 1
    assert "knowledge/notes.md: sha256 differs" in capsys.readouterr().err


def test_an_app_saved_with_its_index_in_the_manifest_still_travels_without_it(tiny_store):
    from workbench.store.entries import APP_INDEX, travelling

    manifest = {"kind": "app", "files": {"app.toml": {"size": 1, "sha256": "0" * 64},
                                         APP_INDEX: {"size": 1, "sha256": "1" * 64}}}
    assert set(travelling("app", manifest)["files"]) == {"app.toml"}
    assert travelling("model", manifest) is manifest  # only apps have a local index
