"""The client against the real server (``workbench serve --store-only``'s app, uvicorn on
loopback): two store roots, pull, push, scopes, ``Store(url=..., api_key=...)``."""
from __future__ import annotations

import pytest

from workbench.serve.keys import KeyStore
from workbench.store import Store
from workbench.store.remote import RemoteAuthError, RemoteClashError, RemoteScopeError


@pytest.fixture
def served(tiny_store):
    from workbench.serve.server import ServerThread, build_app

    app, registry = build_app(tiny_store, store_only=True)
    server = ServerThread(app, host="127.0.0.1").start()
    keys = KeyStore(tiny_store.home)
    server.keys = {"team": keys.create("team", "pull,publish"), "gen": keys.create("gen")}
    yield server
    server.stop()
    registry.close()


def test_pull_from_a_real_server_and_generate(served, tmp_path):
    remote = Store(tmp_path / "local-home", url=served.url, api_key=served.keys["team"])
    assert "tiny-gpt2" in {e.id for e in remote.list()}
    out = remote.download_model("tiny-gpt2").generate("hi", max_new_tokens=2, temperature=0)
    assert out.text is not None
    assert remote.local.manifest("tiny-gpt2")["origin"]["url"] == served.url


def test_real_server_keys_and_scopes(served, tmp_path):
    with pytest.raises(RemoteAuthError):
        Store(tmp_path / "a", url=served.url, api_key="wb-nope").list()
    with pytest.raises(RemoteScopeError, match="pull"):  # a key made before scopes: generate only
        Store(tmp_path / "a", url=served.url, api_key=served.keys["gen"]).list()


def test_push_to_a_real_server_refuses_a_clash_then_takes_a_new_id(served, tiny_store, tiny_model_dirs, tmp_path):
    mine = Store(tmp_path / "mine-home")
    mine.add("tiny-gpt2", local_dir=tiny_model_dirs["gpt2"])
    remote = Store(mine.home, url=served.url, api_key=served.keys["team"])
    with pytest.raises(RemoteClashError, match="--as"):
        remote.push("tiny-gpt2")
    entry = remote.push("tiny-gpt2", as_id="tiny-gpt2-mine")
    assert entry.id == "tiny-gpt2-mine"
    assert Store(tiny_store.home).is_installed("tiny-gpt2-mine")
