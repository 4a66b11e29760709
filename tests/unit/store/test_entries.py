"""Store entries as they travel: digests, the listing of models, datasets and apps, the blob
index, hostile manifests, and an entry received from another store whole or not at all."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from workbench.store import Store, entries
from workbench.store.entries import (
    BadManifestError,
    EntryExistsError,
    MissingBlobsError,
    StoreIndex,
    check_manifest,
    entry_digest,
    list_entries,
    receive_entry,
)

SHA = "a" * 64


def make_app(store: Store, app_id: str = "helper", base: str = "tiny-llama") -> Path:
    """An app entry written by hand, as the design contract lays it out."""
    folder = store.home / "apps" / app_id
    (folder / "knowledge").mkdir(parents=True)
    (folder / "app.toml").write_text(f'id = "{app_id}"\nname = "Helper"\nbase_model = "{base}"\n'
                                     'instructions = "Be brief."\n')
    (folder / "knowledge" / "handbook.md").write_text("# Rules\nAlways answer in French.\n")
    files = {}
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        files[f.relative_to(folder).as_posix()] = {"size": f.stat().st_size,
                                                   "sha256": hashlib.sha256(f.read_bytes()).hexdigest()}
    (folder / "manifest.json").write_text(json.dumps({"id": app_id, "kind": "app", "installed_at": "x",
                                                      "files": files}))
    return folder


def make_dataset(store: Store, tmp_path: Path, dataset_id: str = "notes") -> None:
    from workbench.data.install import add_dataset

    src = tmp_path / f"{dataset_id}.txt"
    src.write_text("\n\n".join(f"Paragraph {i} about the sea and the wind, told once more." for i in range(60)))
    add_dataset(store, dataset_id, src)


def test_digest_is_the_stores_fingerprint(tiny_store):
    manifest = tiny_store.manifest("tiny-gpt2")
    assert entry_digest(manifest["files"]) == tiny_store.fingerprint("tiny-gpt2")


def test_listing_holds_models_datasets_and_apps(tiny_store, tmp_path):
    make_dataset(tiny_store, tmp_path)
    make_app(tiny_store)
    (tiny_store.home / "apps" / "half").mkdir()  # no manifest: not an entry
    got = {(e["kind"], e["id"]): e for e in list_entries(tiny_store)}
    assert {("model", "tiny-gpt2"), ("model", "tiny-llama"), ("dataset", "notes"), ("app", "helper")} <= set(got)
    assert ("app", "half") not in got
    model = got[("model", "tiny-gpt2")]
    assert model["builtin"] is False and 'id = "tiny-gpt2"' in model["card"]
    assert model["digest"] == tiny_store.fingerprint("tiny-gpt2")
    assert model["size_bytes"] == sum(m["size"] for m in model["manifest"]["files"].values())
    assert got[("dataset", "notes")]["card"].startswith('id = "notes"')
    assert 'base_model = "tiny-llama"' in got[("app", "helper")]["card"]


def test_a_damaged_entry_is_not_listed(tiny_store):
    (tiny_store.models_dir / "tiny-gpt2" / "config.json").write_text("{}")  # another size
    assert "tiny-gpt2" not in {e["id"] for e in list_entries(tiny_store)}


def test_blob_index_follows_installs(tiny_store):
    index = StoreIndex(tiny_store)
    files = tiny_store.manifest("tiny-gpt2")["files"]
    sha = files["config.json"]["sha256"]
    path, size = index.blob(sha)
    assert path.read_bytes() and size == files["config.json"]["size"]
    assert index.blob(SHA) is None
    tiny_store.remove("tiny-gpt2")
    assert index.blob(sha) is None


@pytest.mark.parametrize("rel", ["../evil", "a/../../evil", "/etc/passwd", "C:/x", "a\\b", "", "a//b", "./a",
                                 "manifest.json"])
def test_hostile_paths_are_refused(rel):
    with pytest.raises(BadManifestError, match="path|manifest"):
        check_manifest({"files": {rel: {"size": 1, "sha256": SHA}, "config.json": {"size": 1, "sha256": SHA}}},
                       "model")


@pytest.mark.parametrize("meta", [{"size": -1, "sha256": SHA}, {"size": "1", "sha256": SHA},
                                  {"size": True, "sha256": SHA}, {"size": 1, "sha256": "zz"}, "x"])
def test_bad_sizes_and_hashes_are_refused(meta):
    with pytest.raises(BadManifestError):
        check_manifest({"files": {"config.json": meta}}, "model")


def test_a_gguf_path_is_checked_too():
    with pytest.raises(BadManifestError, match="'..'"):
        check_manifest({"files": {"config.json": {"size": 1, "sha256": SHA}},
                        "gguf": {"file": "../x.gguf", "size": 1, "sha256": SHA}}, "model")


def test_a_file_and_folder_of_one_name_is_refused():
    with pytest.raises(BadManifestError, match="file and as a folder"):
        check_manifest({"files": {"config.json": {"size": 1, "sha256": SHA}, "a": {"size": 1, "sha256": SHA},
                                  "a/b": {"size": 1, "sha256": SHA}}}, "model")


def _uploads_of(src: Store, kind: str, entry_id: str, tmp_path: Path) -> dict:
    """sha256 -> a checked copy of each file of the entry (what a push would have uploaded)."""
    entry = entries.read_entry(src, kind, entry_id)
    folder = entries.entry_dir(src, kind, entry_id)
    out = tmp_path / "uploads"
    out.mkdir(exist_ok=True)
    blobs = {}
    for rel, meta in entries.transfer_files(entry["manifest"]).items():
        shutil.copyfile(folder / rel, out / meta["sha256"])
        blobs[meta["sha256"]] = out / meta["sha256"]
    return blobs


def test_a_model_is_received_whole_and_loads(tiny_store, tmp_path):
    other = Store(tmp_path / "other")
    entry = entries.read_entry(tiny_store, "model", "tiny-gpt2")
    got = receive_entry(other, "model", "tiny-gpt2", entry["card"], entry["manifest"],
                        _uploads_of(tiny_store, "model", "tiny-gpt2", tmp_path))
    assert got["digest"] == entry["digest"]
    assert other.is_installed("tiny-gpt2") and other.verify("tiny-gpt2").ok
    from workbench.runtime.loading import load_model

    a = load_model("tiny-gpt2", store=tiny_store).generate("Hello", max_new_tokens=4).text
    b = load_model("tiny-gpt2", store=other).generate("Hello", max_new_tokens=4).text
    assert a == b
    with pytest.raises(EntryExistsError, match="--as NEW_ID"):
        receive_entry(other, "model", "tiny-gpt2", entry["card"], entry["manifest"], {})


def test_a_received_model_under_another_id_gets_its_card_renamed(tiny_store, tmp_path):
    other = Store(tmp_path / "other")
    entry = entries.read_entry(tiny_store, "model", "tiny-gpt2")
    receive_entry(other, "model", "my-gpt2", entry["card"], entry["manifest"],
                  _uploads_of(tiny_store, "model", "tiny-gpt2", tmp_path))
    assert other.card("my-gpt2").id == "my-gpt2" and other.is_installed("my-gpt2")


def test_missing_blobs_leave_nothing(tiny_store, tmp_path):
    other = Store(tmp_path / "other")
    entry = entries.read_entry(tiny_store, "model", "tiny-gpt2")
    blobs = _uploads_of(tiny_store, "model", "tiny-gpt2", tmp_path)
    dropped = sorted(blobs)[0]
    del blobs[dropped]
    with pytest.raises(MissingBlobsError) as err:
        receive_entry(other, "model", "tiny-gpt2", entry["card"], entry["manifest"], blobs)
    assert err.value.missing == [dropped]
    assert not (other.models_dir / "tiny-gpt2").exists() and not (other.cards_dir / "tiny-gpt2.toml").exists()
    assert list(other.staging_dir.iterdir()) == []
    assert all(p.is_file() for p in blobs.values())  # the uploads survive a refused commit


def test_files_held_locally_are_copied_not_needed(tiny_store, tmp_path):
    """A second entry with the same files needs no upload: the store's own copies serve."""
    entry = entries.read_entry(tiny_store, "model", "tiny-gpt2")
    receive_entry(tiny_store, "model", "gpt2-copy", entry["card"], entry["manifest"], {})
    assert tiny_store.fingerprint("gpt2-copy") == entry["digest"]


def test_a_corrupt_local_copy_is_not_used(tiny_store, tmp_path):
    entry = entries.read_entry(tiny_store, "model", "tiny-gpt2")
    config = tiny_store.models_dir / "tiny-gpt2" / "config.json"
    config.write_bytes(b"x" * config.stat().st_size)  # same size, other bytes
    with pytest.raises(MissingBlobsError) as err:
        receive_entry(tiny_store, "model", "gpt2-copy", entry["card"], entry["manifest"], {})
    assert err.value.missing == [entry["manifest"]["files"]["config.json"]["sha256"]]


def test_an_app_is_received_with_its_knowledge_under_a_new_id(tiny_store, tmp_path):
    make_app(tiny_store)
    entry = entries.read_entry(tiny_store, "app", "helper")
    other = Store(tmp_path / "other")
    got = receive_entry(other, "app", "helper-2", None, entry["manifest"], _uploads_of(tiny_store, "app", "helper", tmp_path))
    folder = other.home / "apps" / "helper-2"
    assert (folder / "knowledge" / "handbook.md").read_text().startswith("# Rules")
    assert 'id = "helper-2"' in (folder / "app.toml").read_text()
    assert got["manifest"]["files"]["app.toml"]["sha256"] == hashlib.sha256((folder / "app.toml").read_bytes()).hexdigest()
    assert (tiny_store.home / "apps" / "helper" / "app.toml").read_text().startswith('id = "helper"')  # not through a link


def test_an_app_id_may_not_be_a_model_id(tiny_store, tmp_path):
    make_app(tiny_store)
    entry = entries.read_entry(tiny_store, "app", "helper")
    with pytest.raises(EntryExistsError, match="model id"):
        receive_entry(tiny_store, "app", "tiny-gpt2", None, entry["manifest"], {})


def test_a_model_that_needs_remote_code_is_refused(tiny_store, tmp_path):
    other = Store(tmp_path / "other")
    entry = entries.read_entry(tiny_store, "model", "tiny-gpt2")
    blobs = _uploads_of(tiny_store, "model", "tiny-gpt2", tmp_path)
    config = json.loads((tiny_store.models_dir / "tiny-gpt2" / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "evil.Model"}
    raw = json.dumps(config).encode()
    sha = hashlib.sha256(raw).hexdigest()
    (tmp_path / "uploads" / sha).write_bytes(raw)
    manifest = json.loads(json.dumps(entry["manifest"]))
    manifest["files"]["config.json"] = {"size": len(raw), "sha256": sha}
    from workbench.errors import UnsupportedModelError

    with pytest.raises(UnsupportedModelError, match="custom code"):
        receive_entry(other, "model", "tiny-gpt2", entry["card"], manifest, {**blobs, sha: tmp_path / "uploads" / sha})
    assert not (other.models_dir / "tiny-gpt2").exists() and not (other.cards_dir / "tiny-gpt2.toml").exists()


def test_an_entry_that_does_not_fit_the_disk_is_refused(tiny_store, tmp_path, monkeypatch):
    other = Store(tmp_path / "other")
    entry = entries.read_entry(tiny_store, "model", "tiny-gpt2")
    monkeypatch.setattr(entries.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 1000))
    from workbench.errors import DiskSpaceError

    with pytest.raises(DiskSpaceError, match="nothing was accepted"):
        receive_entry(other, "model", "tiny-gpt2", entry["card"], entry["manifest"], {})
    assert not (other.models_dir / "tiny-gpt2").exists()


def _fake_builtin(store: Store, src: Store) -> str:
    """The tiny model's files installed under a built-in card's id (listing reads manifests and
    sizes only, so this is a whole entry of a built-in model)."""
    builtin = next(c.id for c in store.catalog if not c.custom)
    shutil.copytree(src.models_dir / "tiny-gpt2", store.models_dir / builtin)
    return builtin


def test_a_builtin_model_travels_without_a_card(tiny_store, tmp_path):
    builtin = _fake_builtin(tiny_store, tiny_store)
    entry = entries.read_entry(tiny_store, "model", builtin)
    assert entry["builtin"] is True and entry["card"] is None
    other = Store(tmp_path / "other")
    blobs = _uploads_of(tiny_store, "model", builtin, tmp_path)
    got = receive_entry(other, "model", builtin, None, entry["manifest"], blobs)
    assert got["builtin"] is True and other.is_installed(builtin)
    assert not (other.cards_dir / f"{builtin}.toml").exists()
    with pytest.raises(BadManifestError, match="without a card"):
        receive_entry(other, "model", "not-a-builtin", None, entry["manifest"], blobs)


def test_an_app_that_brings_its_own_index_is_refused():
    from workbench.store.entries import BadManifestError, check_manifest

    sha = "0" * 64
    manifest = {"files": {"app.toml": {"size": 10, "sha256": sha}, "index.sqlite": {"size": 10, "sha256": sha}}}
    with pytest.raises(BadManifestError, match="built where the app lands"):
        check_manifest(manifest, "app")  # its passages would be cited as sent
