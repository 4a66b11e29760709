"""What the listing shows: `store remove` of a user's model takes card and files out together, a
built-in card stays as available, a card whose source is gone is never `available`, a malformed
user card is reported once and skipped, and the cards are re-read only when one changed."""
import json
import logging
import shutil

import pytest

from workbench.cli import main
from workbench.errors import (
    ModelNotInstalledError,
    SourceUnavailableError,
    UnknownModelError,
    WorkbenchError,
)
from workbench.store import AVAILABLE, INSTALLED, NEEDS_NETWORK, SOURCE_MISSING, Store
from workbench.store import catalog as catalog_module


def _listed(capsys) -> dict:
    assert main(["store", "list", "--json"]) == 0
    return {e["id"]: e for e in json.loads(capsys.readouterr().out)}


def test_store_remove_of_a_users_model_takes_out_card_and_files(isolated_home, tiny_model_dirs, tmp_path, capsys):
    folder = tmp_path / "mine"
    shutil.copytree(tiny_model_dirs["gpt2"], folder)
    Store(isolated_home).add("mine", local_dir=folder)
    assert _listed(capsys)["mine"]["status"] == INSTALLED
    assert main(["store", "remove", "mine"]) == 0
    assert "its files and its card" in capsys.readouterr().out
    assert "mine" not in _listed(capsys)
    store = Store(isolated_home)
    assert not (store.models_dir / "mine").exists() and not (store.cards_dir / "mine.toml").exists()
    with pytest.raises(UnknownModelError):
        store.card("mine")


def test_a_not_installed_users_model_can_be_removed_too(isolated_home, tiny_model_dirs):
    store = Store(isolated_home)
    store.add("later", local_dir=tiny_model_dirs["llama"], install=False)
    assert store.entry("later").status == AVAILABLE
    assert store.discard("later") and "later" not in store.catalog


def test_a_builtin_model_stays_listed_after_remove(isolated_home, capsys):
    before = _listed(capsys)["distilgpt2"]["status"]
    assert before in (AVAILABLE, NEEDS_NETWORK)
    assert main(["store", "remove", "distilgpt2"]) == 0
    assert "was not installed" in capsys.readouterr().out
    assert _listed(capsys)["distilgpt2"]["status"] == before
    assert Store(isolated_home).card("distilgpt2")


def test_a_card_whose_source_is_gone_is_not_available(isolated_home, tiny_model_dirs, tmp_path, capsys):
    folder = tmp_path / "jobs" / "x" / "merged"  # like a fine-tune whose job was deleted
    shutil.copytree(tiny_model_dirs["gpt2"], folder)
    store = Store(isolated_home)
    store.add("tuned", local_dir=folder, install=False)
    shutil.rmtree(folder)
    entry = _listed(capsys)["tuned"]
    assert entry["status"] == SOURCE_MISSING and "workbench store remove tuned" in entry["problem"]
    with pytest.raises(ModelNotInstalledError, match="no longer exists"):
        store.path("tuned")
    with pytest.raises(SourceUnavailableError, match="no longer exists.*workbench store remove tuned"):
        store.install("tuned")  # the fix, not a message about internals
    assert main(["store", "remove", "tuned"]) == 0
    capsys.readouterr()
    assert "tuned" not in _listed(capsys)


def test_an_installed_model_whose_source_went_stays_installed(isolated_home, tiny_model_dirs, tmp_path):
    folder = tmp_path / "mine"
    shutil.copytree(tiny_model_dirs["gpt2"], folder)
    store = Store(isolated_home)
    store.add("mine", local_dir=folder)
    shutil.rmtree(folder)
    assert store.entry("mine").status == INSTALLED


def test_a_malformed_user_card_is_reported_once_and_skipped(isolated_home, tiny_model_dirs, caplog, capsys):
    store = Store(isolated_home)
    store.add("good", local_dir=tiny_model_dirs["gpt2"], install=False)
    (store.cards_dir / "broken.toml").write_text('id = "broken"\nname = [1, 2\n')
    (store.cards_dir / "shaped.toml").write_text('id = "shaped"\ncapabilities = [{a = 1}]\n')
    with caplog.at_level(logging.WARNING, logger="workbench.store.catalog"):
        for _ in range(3):
            ids = {e.card.id for e in Store(isolated_home).list()}
    assert "good" in ids and "broken" not in ids and "shaped" not in ids
    warned = [r for r in caplog.records if "broken.toml" in r.getMessage()]
    assert len(warned) == 1
    problems = {p.name: m for p, m in Store(isolated_home).catalog.problems}
    assert set(problems) == {"broken.toml", "shaped.toml"} and "Fix or delete the file" in problems["broken.toml"]
    assert main(["store", "list"]) == 0
    assert "skipped" in capsys.readouterr().err


def test_a_user_card_reusing_a_builtin_id_is_skipped(isolated_home):
    store = Store(isolated_home)
    builtin = (catalog_module.BUILTIN_CARDS / "gpt2.toml").read_text()
    (store.cards_dir / "gpt2.toml").write_text(builtin)
    listing = Store(isolated_home)
    assert not listing.card("gpt2").custom
    assert any("already used" in m for _, m in listing.catalog.problems)


def test_listing_rereads_cards_only_when_one_changed(isolated_home, tiny_model_dirs, monkeypatch):
    store = Store(isolated_home)
    store.add("one", local_dir=tiny_model_dirs["gpt2"], install=False)
    reads = []
    real = catalog_module.read_card
    monkeypatch.setattr(catalog_module, "read_card", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    store.list()
    store.list()
    assert reads == []  # nothing changed since add() re-read them
    store.add("two", local_dir=tiny_model_dirs["llama"], install=False)
    reads.clear()
    assert {"one", "two"} <= {e.card.id for e in store.list()}
    assert reads == []  # add() already re-read
    card = store.cards_dir / "one.toml"
    card.write_text(card.read_text().replace('name = "one"', 'name = "One, renamed"'))
    assert store.card("one").name == "one"
    assert next(e for e in store.list() if e.card.id == "one").card.name == "One, renamed"


@pytest.mark.parametrize("bad", ["ok\n", "Upper", "../x", "a b", ""])
def test_an_id_with_a_final_newline_or_odd_characters_is_refused(tiny_store, tiny_model_dirs, bad):
    cards = sorted(tiny_store.cards_dir.iterdir())
    with pytest.raises(WorkbenchError):
        tiny_store.add(bad, local_dir=tiny_model_dirs["gpt2"])
    assert sorted(tiny_store.cards_dir.iterdir()) == cards


def test_a_users_card_cannot_take_over_a_builtin_alias(tiny_store, tiny_model_dirs):
    card = tiny_store.cards_dir / "tiny-gpt2.toml"
    text = card.read_text()
    assert "aliases" not in text
    card.write_text(text.replace('name = ', 'aliases = ["smollm2", "tiny-llama", "mine"]\nname = ', 1))
    tiny_store.catalog.reload()
    assert tiny_store.catalog.resolve("smollm2") == "smollm2-135m-instruct"  # the built-in keeps it
    assert tiny_store.catalog.resolve("tiny-llama") == "tiny-llama"  # an id stays that model's
    assert tiny_store.catalog.resolve("mine") == "tiny-gpt2"  # a free alias works
    assert any("alias 'smollm2'" in m for _, m in tiny_store.catalog.problems)
