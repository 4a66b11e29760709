"""The dataset card lives in the store (``workbench.store.dataset_cards``): the data package
re-exports the very same objects, and the store receives a dataset entry, with its card or as a
built-in one, without ever importing ``workbench.data``."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from workbench.errors import CardError
from workbench.store import Store, dataset_cards, entries


def test_the_data_package_names_the_stores_card_objects():
    from workbench import data
    from workbench.data import cards, formats, install

    for name in cards.__all__:
        assert getattr(cards, name) is getattr(dataset_cards, name), name
    assert data.DatasetCard is dataset_cards.DatasetCard and data.DatasetCatalog is dataset_cards.DatasetCatalog
    assert formats.FORMATS is dataset_cards.FORMATS and data.FORMATS is dataset_cards.FORMATS
    assert install.catalog is dataset_cards.dataset_catalog
    assert install.custom_cards_dir is dataset_cards.custom_cards_dir


def test_the_store_catalog_holds_the_shipped_cards_and_the_users(isolated_home):
    store = Store(isolated_home)
    assert dataset_cards.builtin_cards_dir().is_dir()
    shipped = {card.id for card in dataset_cards.dataset_catalog(store)}
    assert "shakespeare" in shipped
    mine = dataset_cards.custom_cards_dir(store)
    assert mine == store.home / entries.CARD_DIRS["dataset"]
    mine.mkdir(parents=True)
    (mine / "notes.toml").write_text(textwrap.dedent(f"""\
        id = "notes"
        name = "Notes"
        format = "text"
        license = "mine"
        description = "My notes."

        [source]
        kind = "local-file"
        path = "/nowhere/notes.txt"
        sha256 = "{"c" * 64}"
        """))
    catalog = dataset_cards.dataset_catalog(store)
    assert catalog.get("notes").custom and {c.id for c in catalog} == shipped | {"notes"}


def test_a_card_of_an_unknown_format_is_refused_with_the_formats():
    raw = {"id": "x", "name": "X", "format": "csv", "license": "l", "description": "d",
           "source": {"kind": "local-file", "path": "x.txt", "sha256": "d" * 64}}
    with pytest.raises(CardError, match="text, jsonl-text, alpaca, chat"):
        dataset_cards.parse_dataset_card(raw)


RECEIVE = r'''
import hashlib, json, sys
from pathlib import Path
from workbench.errors import CardError
from workbench.store import Store
from workbench.store.entries import BadManifestError, check_card, list_entries, receive_entry

home = Path(sys.argv[1])
store = Store(home / "store")
sent = home / "sent"
sent.mkdir()
files, uploaded = {}, {}
for name, text in (("train.jsonl", '{"text": "the sea"}\n'), ("eval.jsonl", '{"text": "the wind"}\n')):
    (sent / name).write_text(text)
    sha = hashlib.sha256(text.encode()).hexdigest()
    files[name] = {"size": len(text.encode()), "sha256": sha, "documents": 1}
    uploaded[sha] = sent / name
card = "\n".join([
    'id = "theirs"', 'name = "Theirs"', 'format = "jsonl-text"', 'license = "cc0"', 'description = "Sent."',
    "", "[source]", 'kind = "local-file"', 'path = "/elsewhere/notes.jsonl"', f'sha256 = "{"e" * 64}"', ""])
got = receive_entry(store, "dataset", "notes", card, {"id": "theirs", "files": files}, uploaded)
assert got["id"] == "notes" and got["builtin"] is False and 'id = "notes"' in got["card"], got
assert (store.home / "corpora" / "notes.toml").is_file()
assert ("dataset", "notes") in {(e["kind"], e["id"]) for e in list_entries(store)}
check_card(store, "dataset", "shakespeare", None)  # a built-in card travels without its text
for bad, error in ((None, BadManifestError), (card.replace('"jsonl-text"', '"csv"'), CardError)):
    try:
        check_card(store, "dataset", "other", bad)
    except error as err:
        print(type(err).__name__, err)
    else:
        raise AssertionError(f"{bad!r} was accepted")
print(sorted(m for m in sys.modules if m == "workbench.data" or m.startswith("workbench.data.")))
'''


def test_a_dataset_entry_is_received_without_the_data_package(tmp_path):
    out = subprocess.run([sys.executable, "-c", RECEIVE, str(tmp_path)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("BadManifestError") and "Update the workbench here, or send its card" in lines[0]
    assert lines[1].startswith("CardError") and "format 'csv'" in lines[1]
    assert lines[-1] == "[]", out.stdout
