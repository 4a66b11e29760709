"""Key scopes: generate, pull, publish. Keys made before scopes keep doing what they did (the
model routes) and nothing more; a key without the scope a route needs gets 403 naming it."""
from __future__ import annotations

import json

import pytest
import requests

from workbench.cli import main
from workbench.errors import InvalidInputError
from workbench.serve.keys import KeyStore

TIMEOUT = 30


def _get(server, path, key):
    return requests.get(f"{server.url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=TIMEOUT)


def test_a_key_made_before_scopes_can_generate_only(tmp_path):
    keys = KeyStore(tmp_path)
    key = keys.create("old")
    data = json.loads(keys.path.read_text())
    del data["keys"]["old"]["scopes"]  # as written before scopes existed
    keys.path.write_text(json.dumps(data))
    assert keys.authenticate(key).scopes == ("generate",)
    assert keys.list()[0].scopes == ("generate",)


def test_scopes_are_kept_and_checked(tmp_path):
    keys = KeyStore(tmp_path)
    key = keys.create("team", "pull, publish")
    assert keys.authenticate(key).scopes == ("publish", "pull")
    assert keys.list()[0].to_json()["scopes"] == ["publish", "pull"]
    with pytest.raises(InvalidInputError, match="generate, pull, publish"):
        keys.create("bad", "pull,admin")
    with pytest.raises(InvalidInputError):
        keys.create("none", "")


def test_a_generate_key_gets_403_naming_pull_on_the_store(start_server, tiny_store):
    server = start_server(["tiny-gpt2"])
    keys = KeyStore(tiny_store.home)
    generate = keys.create("gen")
    r = _get(server, "/v1/store/index", generate)
    assert r.status_code == 403
    message = r.json()["error"]["message"]
    assert "'pull'" in message and "workbench keys create NAME --scope pull" in message
    assert generate not in message
    assert _get(server, "/v1/models", generate).status_code == 200


def test_a_pull_key_reads_the_store_but_cannot_generate_or_publish(start_server, tiny_store):
    server = start_server(["tiny-gpt2"])
    pull = KeyStore(tiny_store.home).create("puller", "pull")
    assert _get(server, "/v1/store/index", pull).status_code == 200
    r = _get(server, "/v1/models", pull)
    assert r.status_code == 403 and "'generate'" in r.json()["error"]["message"]
    r = requests.post(f"{server.url}/v1/store/uploads", headers={"Authorization": f"Bearer {pull}"},
                      json={"kind": "model", "id": "x", "card": None, "manifest": {"files": {}}}, timeout=TIMEOUT)
    assert r.status_code == 403 and "--scope publish" in r.json()["error"]["message"]


def test_a_revoked_or_wrong_key_gets_401_on_the_store(start_server, tiny_store):
    server = start_server(["tiny-gpt2"])
    keys = KeyStore(tiny_store.home)
    key = keys.create("p", "pull")
    keys.revoke("p")
    for k in (key, "wb-nonsense", ""):
        assert _get(server, "/v1/store/index", k).status_code == 401


def test_cli_makes_scoped_keys_and_lists_scopes(isolated_home, capsys):
    assert main(["keys", "create", "ci", "--scope", "pull,generate"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert KeyStore(isolated_home).authenticate(key).scopes == ("generate", "pull")
    assert main(["keys", "list"]) == 0
    assert "generate,pull" in capsys.readouterr().out
    assert main(["keys", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["scopes"] == ["generate", "pull"]
    assert main(["keys", "create", "plain"]) == 0
    plain = capsys.readouterr().out.strip().splitlines()[-1]
    assert KeyStore(isolated_home).authenticate(plain).scopes == ("generate",)
    assert main(["keys", "create", "bad", "--scope", "root"]) != 0
