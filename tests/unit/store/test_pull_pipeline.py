"""The pull's write path: blocks read off the socket are hashed and written by worker threads,
writeback to disk starts while the bytes arrive, every file is fsynced once (by the install's
commit), and a worker's error (a full disk) stops the pull with nothing installed and a prefix of
the blob kept for the resume. Two store roots, the fake server, tiny models with tiny blocks."""
from __future__ import annotations

import errno
import itertools
import os
import time
from pathlib import Path

import pytest
from test_remote_fakeserver import serving

from workbench.errors import DiskSpaceError
from workbench.store import Store, blobwriter, transfer
from workbench.store.transfer import RemoteStore, partial_dir

KEY = "wb-test-pipeline"
KEYS = {"keys": {KEY: ["pull"]}}
BLOCK = 4096


@pytest.fixture
def local(tmp_path):
    return Store(tmp_path / "local-home")


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(transfer, "CHUNK", BLOCK)  # many blocks per tiny file, so the threads hand over
    monkeypatch.setattr(blobwriter, "CHUNK", BLOCK)


def test_writeback_starts_while_the_bytes_arrive(tiny_store, local, small_blocks, monkeypatch):
    started: dict[int, list[tuple[int, int]]] = {}

    def record(fd, offset, length):
        started.setdefault(os.fstat(fd).st_ino, []).append((offset, length))

    monkeypatch.setattr(blobwriter, "WRITEBACK_EVERY", 4 * BLOCK)
    monkeypatch.setattr(blobwriter, "start_writeback", record)
    with serving(tiny_store.home, KEYS) as url:
        RemoteStore(url, KEY, local=local).pull("tiny-llama")
    assert local.verify("tiny-llama").ok
    weights = local.path("tiny-llama") / "model.safetensors"
    ranges = started[weights.stat().st_ino]
    assert ranges[0][0] == 0
    assert all(a + n == b for (a, n), (b, _) in itertools.pairwise(ranges))  # in order, nothing skipped
    assert weights.stat().st_size - (ranges[-1][0] + ranges[-1][1]) < 4 * BLOCK + BLOCK


def test_every_pulled_file_is_fsynced_once(tiny_store, local, small_blocks, monkeypatch):
    synced: dict[int, int] = {}
    real = os.fsync

    def counting(fd):
        st = os.fstat(fd)
        if not os.path.stat.S_ISDIR(st.st_mode):
            synced[st.st_ino] = synced.get(st.st_ino, 0) + 1
        return real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    with serving(tiny_store.home, KEYS) as url:
        RemoteStore(url, KEY, local=local).pull("tiny-llama")
    root = local.path("tiny-llama")
    files = [p for p in root.rglob("*") if p.is_file() and p.name != "manifest.json"]
    assert files
    assert {p.name: synced.get(p.stat().st_ino, 0) for p in files} == {p.name: 1 for p in files}


def test_a_full_disk_mid_pull_installs_nothing_and_keeps_a_prefix(tiny_store, local, small_blocks, monkeypatch):
    files = tiny_store.manifest("tiny-llama")["files"]
    weights = files["model.safetensors"]
    real_open = open
    limit = 3 * BLOCK

    class FillsUp:
        def __init__(self, fh):
            self.fh, self.written = fh, 0

        def write(self, block):
            if self.written + len(block) > limit:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.written += len(block)
            return self.fh.write(block)

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def filling_open(path, mode="r", *args, **kwargs):
        fh = real_open(path, mode, *args, **kwargs)
        return FillsUp(fh) if mode == "ab" and Path(path).name == weights["sha256"] else fh

    with serving(tiny_store.home, KEYS) as url:
        monkeypatch.setattr(blobwriter, "open", filling_open, raising=False)
        with pytest.raises(DiskSpaceError, match="nothing was kept"):
            RemoteStore(url, KEY, local=local).pull("tiny-llama")
        assert not (local.models_dir / "tiny-llama").exists()
        kept = (partial_dir(local) / weights["sha256"]).read_bytes()
        assert len(kept) == limit
        assert kept == (tiny_store.path("tiny-llama") / "model.safetensors").read_bytes()[:limit]
        monkeypatch.undo()
        RemoteStore(url, KEY, local=local).pull("tiny-llama")  # space again: it resumes and installs
    assert local.verify("tiny-llama").ok


def test_a_server_that_ignores_the_range_restarts_the_file_from_zero(tiny_store, local, small_blocks, monkeypatch):
    from workbench.store.remote import StoreClient

    weights = tiny_store.manifest("tiny-llama")["files"]["model.safetensors"]
    data = (tiny_store.path("tiny-llama") / "model.safetensors").read_bytes()
    partial_dir(local).mkdir(parents=True)
    (partial_dir(local) / weights["sha256"]).write_bytes(data[: len(data) // 2])  # a stopped pull's bytes
    real = StoreClient._request
    asked = []

    def no_ranges(self, method, path, *, headers=None, **kwargs):
        asked.append(dict(headers or {}).get("Range"))
        return real(self, method, path, headers={k: v for k, v in (headers or {}).items() if k != "Range"}, **kwargs)

    monkeypatch.setattr(StoreClient, "_request", no_ranges)
    with serving(tiny_store.home, KEYS) as url:
        RemoteStore(url, KEY, local=local).pull("tiny-llama")
    assert f"bytes={len(data) // 2}-" in asked  # it asked for the rest, got the whole file, started over
    assert (local.path("tiny-llama") / "model.safetensors").read_bytes() == data
    assert local.verify("tiny-llama").ok


def test_the_bytes_of_a_pull_nobody_resumes_go_after_a_week(tmp_path):
    from workbench.store import store as store_module

    home = tmp_path / "home"
    Store(home)
    partial = home / ".partial"
    partial.mkdir()
    old, recent = partial / ("a" * 64), partial / ("b" * 64)
    old.write_bytes(b"x"), recent.write_bytes(b"y")
    week_ago = time.time() - store_module.PARTIAL_KEEP_S - 60
    os.utime(old, (week_ago, week_ago))
    Store(home)  # a start sweeps
    assert not old.exists() and recent.exists()
