"""The one install primitive (``workbench.store.install``): a reinstall is one atomic step that
readers never see as a missing entry, a full disk is a DiskSpaceError that keeps nothing, and a
killed install leaves nothing once the store starts again."""
import errno
import json
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from workbench.errors import DiskSpaceError, WorkbenchError
from workbench.store import INSTALLED, Store
from workbench.store import install as primitive
from workbench.store.install import installing


def _manifest_id(store: Store, model_id: str) -> str:
    return json.loads((store.path(model_id) / "manifest.json").read_text())["installed_at"]


def test_a_reinstall_never_shows_a_missing_entry(isolated_home, tiny_model_dirs, monkeypatch):
    store = Store(isolated_home)
    store.add("mine", local_dir=tiny_model_dirs["gpt2"])
    target = store.models_dir / "mine"
    seen_missing = []
    real_replace = os.replace

    def watching_replace(src, dst, *args, **kwargs):  # after every rename, the entry must be whole
        real_replace(src, dst, *args, **kwargs)
        if not (target / "manifest.json").is_file():
            seen_missing.append((str(src), str(dst)))

    monkeypatch.setattr(os, "replace", watching_replace)
    failures, stop = [], threading.Event()

    def reader():
        for _ in range(100_000):
            if stop.is_set():
                return
            try:
                Store(isolated_home).path("mine")
            except WorkbenchError as err:
                failures.append(str(err))
                return

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(3):
            store.install("mine", force=True)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert seen_missing == [] and failures == []
    assert store.entry("mine").status == INSTALLED and store.verify("mine").ok
    assert list(store.staging_dir.iterdir()) == []  # the old entry went with the staging folder


def test_without_an_exchange_a_reinstall_still_completes(isolated_home, tiny_model_dirs, monkeypatch):
    store = Store(isolated_home)
    store.add("mine", local_dir=tiny_model_dirs["gpt2"])
    monkeypatch.setattr(primitive, "_renameat2", None)  # a platform without renameat2
    assert primitive.exchange(store.models_dir, store.cards_dir) is False
    store.install("mine", force=True)
    assert store.verify("mine").ok and list(store.staging_dir.iterdir()) == []


def test_exchange_swaps_two_folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "A").touch(), (b / "B").touch()
    if not primitive.exchange(a, b):
        pytest.skip("this filesystem cannot exchange two paths")
    assert [p.name for p in a.iterdir()] == ["B"] and [p.name for p in b.iterdir()] == ["A"]


def test_disk_full_while_committing_keeps_the_old_entry(isolated_home, tiny_model_dirs, monkeypatch):
    store = Store(isolated_home)
    store.add("mine", local_dir=tiny_model_dirs["gpt2"])
    before = _manifest_id(store, "mine")

    def full(root):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(primitive, "fsync_tree", full)
    with pytest.raises(DiskSpaceError, match="filled up while installing mine; nothing was kept"):
        store.install("mine", force=True)
    assert _manifest_id(store, "mine") == before and store.verify("mine").ok
    assert list(store.staging_dir.iterdir()) == []


def test_disk_full_while_exporting_is_a_disk_space_error(tiny_store, monkeypatch):
    from workbench.onnx import cache

    real_run_child = cache.run_child
    disk_full_child = [sys.executable, "-c", "import errno, os; raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), 'model.onnx.data')"]

    def full(args, *rest, **kwargs):  # the real driver, over a child whose write fails as on a full disk
        return real_run_child(disk_full_child, *rest, **kwargs)

    monkeypatch.setattr(cache, "run_child", full)
    with pytest.raises(DiskSpaceError, match="filled up while exporting.*export again"):
        cache.export_model(tiny_store, "tiny-gpt2", "fp32")
    assert not cache.export_dir(tiny_store, "tiny-gpt2", "fp32").exists()
    assert list(tiny_store.staging_dir.iterdir()) == []


def test_leaving_without_commit_changes_nothing(isolated_home):
    store = Store(isolated_home)
    target = store.home / "apps" / "x"
    with installing(store, "app", "x", target) as inst:
        (inst.stage / "file").write_text("half")
    assert not target.exists() and list(store.staging_dir.iterdir()) == []
    with installing(store, "app", "x", target) as inst:
        (inst.stage / "file").write_text("whole")
        inst.commit({"id": "x"})
    assert (target / "file").read_text() == "whole"
    assert json.loads((target / "manifest.json").read_text()) == {"id": "x"}


def test_a_refused_verify_keeps_nothing(isolated_home):
    store = Store(isolated_home)
    target = store.home / "apps" / "x"

    def refuse(stage):
        raise WorkbenchError("refused")

    with pytest.raises(WorkbenchError, match="refused"):
        with installing(store, "app", "x", target) as inst:
            (inst.stage / "file").write_text("bad")
            inst.commit({"id": "x"}, verify=refuse)
    assert not target.exists()


def test_a_killed_install_leaves_nothing_and_the_old_entry_stays(isolated_home):
    store = Store(isolated_home)
    target = store.home / "apps" / "x"
    with installing(store, "app", "x", target) as inst:
        (inst.stage / "file").write_text("old")
        inst.commit({"id": "x"})
    script = textwrap.dedent(f"""
        import os, signal
        from workbench.store import Store
        from workbench.store.install import installing
        store = Store({str(isolated_home)!r})
        with installing(store, "app", "x", store.home / "apps" / "x") as inst:
            (inst.stage / "file").write_text("new, half written")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], timeout=120, check=False)
    assert proc.returncode == -9
    assert any(store.staging_dir.iterdir())  # the dead process left its stage behind...
    Store(isolated_home)  # ...and the next start sweeps it
    assert list(store.staging_dir.iterdir()) == []
    assert (target / "file").read_text() == "old"


def test_a_file_is_published_over_the_old_one_in_one_rename(isolated_home, monkeypatch):
    store = Store(isolated_home)
    target = store.home / "apps" / "x" / "index.sqlite"
    target.parent.mkdir(parents=True)
    target.write_text("old")
    renames, real_replace = [], os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (renames.append((src, dst)), real_replace(src, dst))[1])
    with store.staging("index-x") as scratch:
        built = scratch / "index.sqlite"
        built.write_text("new")
        primitive.publish(built, target)
        assert list(scratch.iterdir()) == []  # moved, nothing swapped back into staging
    assert renames == [(built, target)] and target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["index.sqlite"]
    fresh = store.home / "uploads" / "blob"
    with store.staging("blob") as scratch:  # a file whose target is new: the folder is made
        (scratch / "part").write_text("bytes")
        primitive.publish(scratch / "part", fresh)
    assert fresh.read_text() == "bytes" and list(store.staging_dir.iterdir()) == []
