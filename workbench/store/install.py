"""The one way anything is put into the store: models, datasets, ONNX exports, fine-tune results
(and whatever comes later: apps, pulls). Kind + id + target folder::

    with installing(store, "dataset", card.id, target) as inst:
        if already_there and not force:
            return target                       # leaving without commit changes nothing
        build(inst.stage)                       # write everything into the stage folder
        inst.commit(manifest, verify=check)     # verify, fsync, manifest last, one rename

Contract:

- **Lock.** The block holds ``store.lock(lock or f"{kind}-{id}")``: installs of one thing are
  serialized across processes, so the check for "already installed" inside it is reliable.
- **Staging.** ``inst.stage`` is an empty folder under ``<store>/.staging/``, named with this
  process's pid; the staging folder is deleted when the block ends, and ``Store.sweep_staging``
  deletes those of dead processes (``common.pid_alive``). A failed or killed install leaves
  nothing in place.
- **Commit.** ``verify(stage)`` runs first (it raises to refuse); then every file and folder of
  the stage is fsynced; the manifest (if given) is written last, atomically
  (``common.atomic_write_json``); then the stage takes the target's place in **one** atomic
  rename, a reinstall included: with an existing target the two are swapped by
  ``renameat2(RENAME_EXCHANGE)`` (Linux), so a reader of ``target`` sees the old entry or the new
  one, never a missing one; the old one lands in staging and goes with it. On a filesystem or
  platform without the exchange, a reinstall falls back to two renames (old aside, new in), the
  only case where a reader can find the target missing for an instant.
- **Disk full.** An ``OSError`` with ``errno.ENOSPC`` anywhere in the block becomes a
  ``DiskSpaceError`` that says nothing was kept and what to do.

One file built apart (an app's rebuilt index, an upload's checked blob) is placed with the same
``publish``: one ``os.replace`` and the folders fsynced.

This module never fetches, converts or hashes: callers build and check; it only places.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..common import atomic_write_json, fsync_dir
from ..errors import DiskSpaceError, WorkbenchError

# ``Store`` in annotations is ``workbench.store.store.Store``, named, not imported: this module
# sits below it (the store class calls it), and annotations are never evaluated here.

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV}


def _load_renameat2():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):  # not glibc >= 2.28 / not Linux
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_renameat2 = _load_renameat2()


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step. False when this platform or filesystem cannot
    (nothing was changed then); other failures raise ``OSError``."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def fsync_tree(root: Path) -> None:
    """fsync every file under ``root``, then every folder (deepest first), ``root`` included."""
    folders = [root]
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        folders += [Path(dirpath) / d for d in dirnames]
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(folder)


def publish(new: Path, target: Path, aside: Path | None = None) -> None:
    """Put ``new`` (a folder or a file, written and checked) at ``target`` in one rename, then
    fsync the folders involved; it never fsyncs ``new`` itself (``commit`` does, with
    ``fsync_tree``). A file replaces an existing target in that rename (``os.replace`` is atomic
    for files). A folder is swapped with an existing target (``exchange``), the old one landing at
    ``new``'s path; without an exchange the old one is renamed to ``aside`` (default: beside
    ``new``) first. Keep ``new`` in the store's staging, so what a swap leaves there goes with it,
    or beside ``target``; the two must be on one filesystem. The caller holds the lock of what it
    places (or is otherwise its only writer)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if not os.path.lexists(target) or not new.is_dir():
        os.replace(new, target)
    elif not exchange(new, target):
        os.replace(target, aside or new.with_name(f"{new.name}.old"))
        os.replace(new, target)
    fsync_dir(target.parent)
    if new.parent != target.parent:
        fsync_dir(new.parent)


@dataclass
class Installation:
    """One install in progress: build into ``stage``, then ``commit``."""

    store: Store
    kind: str
    item_id: str
    target: Path
    staging: Path  # the whole staging folder: ``stage`` and scratch space beside it
    committed: bool = False

    @property
    def stage(self) -> Path:
        return self.staging / "entry"

    def commit(self, manifest: dict | None = None, *, manifest_name: str = "manifest.json",
               verify: Callable[[Path], None] | None = None) -> Path:
        """Verify the stage, fsync it, write ``manifest`` last, and move it to ``target`` in one
        rename (see the module docstring). Returns ``target``. Once per installation."""
        if self.committed:
            raise WorkbenchError(f"{self.kind} {self.item_id} was already committed; start a new install.")
        if verify is not None:
            verify(self.stage)
        fsync_tree(self.stage)
        if manifest is not None:
            atomic_write_json(self.stage / manifest_name, manifest)
        publish(self.stage, self.target, self.staging / "old")
        self.committed = True
        return self.target


def disk_full_error(store: Store, what: str, fix: str, err: OSError) -> DiskSpaceError:
    return DiskSpaceError(
        f"The disk under {store.home} filled up while {what}; nothing was kept. Free some space "
        f"(`workbench store remove ID` deletes a model's files), then {fix}."
    )


@contextmanager
def installing(store: Store, kind: str, item_id: str, target: str | Path, *, lock: str | None = None,
               what: str | None = None, fix: str = "install again") -> Iterator[Installation]:
    """Hold the lock and a fresh stage for one install of ``kind`` ``item_id`` into ``target``.
    ``what`` / ``fix`` word the disk-full message ("installing dataset x", "install again")."""
    with store.lock(lock or f"{kind}-{item_id}"):
        with store.staging(f"{kind}-{item_id}") as staging:
            inst = Installation(store, kind, item_id, Path(target), staging)
            try:
                inst.stage.mkdir()
                yield inst
            except OSError as err:
                if err.errno == errno.ENOSPC:
                    raise disk_full_error(store, what or f"installing {kind} {item_id}", fix, err) from err
                raise
