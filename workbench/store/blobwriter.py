"""Writing a blob as it arrives: ``HashingWriter`` appends blocks in order while worker threads
hash and write them (so reading the socket, hashing and writing overlap, and the file on disk is
always a prefix of the blob, which is what a resumed pull relies on), and ``start_writeback`` asks
the kernel to begin writing as bytes land (Linux ``sync_file_range``; it never replaces the
install's fsync). Used by ``transfer.pull``; knows nothing of HTTP or the store's layout."""
from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import queue
import threading
from pathlib import Path

from .sources import CHUNK  # the size of each buffer


def _load_sync_file_range():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):  # not Linux
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_sync_file_range = _load_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2  # start writeback of dirty pages, do not wait
WRITEBACK_EVERY = 32 << 20


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing ``length`` bytes from ``offset`` to disk now, without
    waiting, so the install's fsync later finds them written. A no-op where unsupported; it
    never replaces that fsync."""
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


class HashingWriter:
    """A file opened for appending, fed by the thread that reads the socket, with two worker
    threads behind it: one hashes each block, then one writes it (hashlib and file writes
    release the GIL), so reading, hashing and writing overlap. Blocks are written in order, so
    what is on disk is always a prefix of the blob, and each has been hashed before it is
    written. Readers fill buffers from ``buffer()`` (at most ``DEPTH`` in flight: memory stays
    bounded) and hand them over with ``write(memoryview)``; ``close`` waits for every block and
    raises a worker's error, if any. Writeback to disk is started as blocks land
    (``start_writeback``)."""

    DEPTH = 6

    def __init__(self, path: Path, digest):
        self.fh = open(path, "ab", buffering=0)  # noqa: SIM115 -- closed by close()
        self.digest = digest
        self.error: BaseException | None = None
        self._start()

    def _start(self) -> None:
        self._free: queue.Queue = queue.Queue()  # a fresh pool: a reader's last, unused buffer is not lost
        for _ in range(self.DEPTH):
            self._free.put(bytearray(CHUNK))
        self._to_hash: queue.Queue = queue.Queue()
        self._to_write: queue.Queue = queue.Queue()
        self._threads = [threading.Thread(target=self._hash, name="pull-hash", daemon=True),
                         threading.Thread(target=self._write, name="pull-write", daemon=True)]
        for thread in self._threads:
            thread.start()

    def _hash(self) -> None:
        while (item := self._to_hash.get()) is not None:
            if self.error is None:
                self.digest.update(item[1])
            self._to_write.put(item)
        self._to_write.put(None)

    def _write(self) -> None:
        fd, synced = self.fh.fileno(), self.fh.tell()
        while (item := self._to_write.get()) is not None:
            buf, block = item
            try:
                if self.error is None:
                    self.fh.write(block)
                    end = self.fh.tell()
                    if end - synced >= WRITEBACK_EVERY:
                        start_writeback(fd, synced, end - synced)
                        synced = end
            except BaseException as err:  # noqa: BLE001 -- re-raised in the reading thread by write() / close();
                self.error = err           # the buffer still goes back, so the reader never waits forever
            finally:
                block.release()
                self._free.put(buf)

    def buffer(self) -> bytearray:
        """A free buffer to read the next block into (waits while ``DEPTH`` are in flight)."""
        if self.error is not None:
            raise self.error
        return self._free.get()

    def write(self, block: memoryview) -> None:
        """Queue ``block`` (a view of a buffer from ``buffer()``; the writer owns it now)."""
        if self.error is not None:
            raise self.error
        self._to_hash.put((block.obj, block))

    def _join(self) -> None:
        self._to_hash.put(None)
        for thread in self._threads:
            thread.join()

    def restart(self) -> None:
        """Drop everything written so far (the server ignored the Range): an empty file, a new hash."""
        self._join()
        if self.error is not None:
            raise self.error
        self.fh.truncate(0)
        self.fh.seek(0)
        self.digest = hashlib.sha256()
        self._start()

    def close(self) -> None:
        try:
            self._join()
        finally:
            self.fh.close()
        if self.error is not None:
            raise self.error
