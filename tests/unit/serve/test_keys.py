"""API keys: hashed at rest, atomic writes, revocation seen by a running server, the CLI."""
from __future__ import annotations

import hashlib
import json
import stat

import pytest

from workbench.cli import main
from workbench.errors import InvalidInputError
from workbench.serve.keys import KeyStore


def test_keys_are_stored_hashed_and_checked(tmp_path):
    keys = KeyStore(tmp_path)
    key = keys.create("alice")
    raw = keys.path.read_text()
    assert key not in raw and key[7:] not in raw
    assert hashlib.sha256(key.encode()).hexdigest() in raw
    assert json.loads(raw)["hash"] == "sha256"
    assert stat.S_IMODE(keys.path.stat().st_mode) == 0o600
    assert sorted(p.name for p in keys.path.parent.iterdir()) == ["keys.json", "keys.lock"]  # no temp file left
    assert keys.check(key) == "alice"
    assert keys.check(key + "x") is None and keys.check("") is None and keys.check(None) is None
    assert [k.name for k in keys.list()] == ["alice"] and keys.list()[0].prefix == key[:7]


def test_revoked_keys_stop_working_in_another_keystore_instance(tmp_path):
    server_side, cli_side = KeyStore(tmp_path), KeyStore(tmp_path)
    key = cli_side.create("bob")
    assert server_side.check(key) == "bob"
    assert cli_side.revoke("bob") and not cli_side.revoke("bob")
    assert server_side.check(key) is None


@pytest.mark.parametrize("name", ["", "a b", "../x", "-x", "x" * 65])
def test_bad_key_names_are_refused(tmp_path, name):
    with pytest.raises(InvalidInputError):
        KeyStore(tmp_path).create(name)


def test_duplicate_names_are_refused(tmp_path):
    keys = KeyStore(tmp_path)
    keys.create("a")
    with pytest.raises(InvalidInputError, match="exists"):
        keys.create("a")


def test_cli_prints_the_key_once_on_its_last_line(isolated_home, capsys):
    assert main(["keys", "create", "ci"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert key.startswith("wb-") and len(key) > 40
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert "ci" in listing and key not in listing
    assert main(["keys", "list", "--json"]) == 0
    assert key not in capsys.readouterr().out
    assert KeyStore(isolated_home).check(key) == "ci"
    assert main(["keys", "revoke", "ci"]) == 0
    assert main(["keys", "revoke", "ci"]) == 1
    assert KeyStore(isolated_home).check(key) is None


def test_serve_is_registered_on_the_cli():
    from workbench.cli import build_parser

    args = build_parser().parse_args(["serve", "--model", "a", "--model", "b", "--port", "9000"])
    assert args.model == ["a", "b"] and args.port == 9000 and args.host == "127.0.0.1"
    assert args.cors_origin is None
