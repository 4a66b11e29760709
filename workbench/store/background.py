"""What the Store page shows of a remote store, and the pulls and pushes it runs in the background.

Contract:

- ``compare(entries, against)``: each entry (a ``RemoteEntry``) beside the other store's entries,
  as ``Row``s whose ``status`` is ``SAME`` (the other store holds that kind and id with the same
  digest), ``OTHER`` (it holds another version) or ``ABSENT``. Plain data: no HTTP, no Streamlit.
- ``local_entries(store)``: the local store's whole entries (models, datasets, apps) as
  ``RemoteEntry``s, the same shape as a remote index, so both sides compare alike.
- ``start_pull`` / ``start_push``: run one transfer in a daemon thread and return its
  ``Transfer``, which records progress (fraction, message) and, once done, a result sentence or
  the error raised. Transfers live in a process-wide registry keyed by (store root, url,
  direction, kind, id), not in a browser session, so a page that reloads mid-pull finds its pull
  still running; starting a transfer whose key is running returns the running one (never two at
  once). ``transfers(store)`` lists a store's, oldest first; ``dismiss`` forgets a finished one.
- Keys travel to the thread only: a ``Transfer`` never holds one, and ``mask_key`` shows a key by
  its first characters.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .remote import RemoteEntry

SAME, OTHER, ABSENT = "same", "other", "absent"
SHOWN_KEY_CHARS = 7


def mask_key(key: str | None) -> str:
    """A key as people may see it: its first characters, or 'no key'."""
    return f"{key[:SHOWN_KEY_CHARS]}…" if key else "no key"


@dataclass(frozen=True)
class Row:
    """One entry of a catalog beside another store's."""

    kind: str
    id: str
    name: str
    size_bytes: int
    digest: str
    status: str  # SAME | OTHER | ABSENT, as the *other* store holds it


def compare(entries: list[RemoteEntry], against: list[RemoteEntry]) -> list[Row]:
    """``entries`` as rows, each with how ``against`` holds it (see the module docstring)."""
    theirs = {(e.kind, e.id): e.digest for e in against}
    rows = []
    for e in entries:
        other = theirs.get((e.kind, e.id))
        status = ABSENT if other is None else SAME if other == e.digest else OTHER
        rows.append(Row(e.kind, e.id, e.name, e.size_bytes, e.digest, status))
    return rows


def local_entries(store) -> list[RemoteEntry]:
    """The local store's whole entries, shaped like a remote index (``entries.list_entries``)."""
    from workbench.store.entries import list_entries

    return [RemoteEntry.from_json(e) for e in list_entries(store)]


# --- background transfers --------------------------------------------------------------------

@dataclass(eq=False)
class Transfer:
    """One pull or push as it runs: read its fields from any thread; only its own thread writes."""

    key: tuple
    direction: str  # "pull" | "push"
    kind: str | None
    item_id: str
    url: str
    fraction: float = 0.0
    message: str = "starting…"
    result: str | None = None  # a sentence for people, once it succeeded
    error: BaseException | None = None  # what it raised, once it failed
    started_at: float = field(default_factory=time.time)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def label(self) -> str:
        verb, where = ("Pulling", "from") if self.direction == "pull" else ("Pushing", "to")
        return f"{verb} {self.kind or 'entry'} {self.item_id} {where} {self.url}"

    def wait(self, timeout: float | None = None) -> bool:
        """Block until done (or ``timeout`` seconds); True when done."""
        return self._done.wait(timeout)

    def _progress(self, fraction: float, message: str) -> None:
        self.fraction = min(max(float(fraction), 0.0), 1.0)
        self.message = message

    def _run(self, action: Callable[[Callable[[float, str], None]], str]) -> None:
        try:
            self.result = action(self._progress)
            self.fraction = 1.0
        except Exception as err:  # noqa: BLE001 - kept and shown by the page: the thread has no caller to raise to
            self.error = err
        finally:
            self._done.set()


_JOBS: dict[tuple, Transfer] = {}
_LOCK = threading.Lock()


def _root(store) -> str:
    return str(Path(store.home).resolve())


def _start(key: tuple, direction: str, kind: str | None, item_id: str, url: str,
           action: Callable[[Callable[[float, str], None]], str]) -> Transfer:
    with _LOCK:
        running = _JOBS.get(key)
        if running is not None and not running.done:
            return running
        job = _JOBS[key] = Transfer(key, direction, kind, item_id, url)
    threading.Thread(target=job._run, args=(action,), name=f"wb-{direction}-{item_id}", daemon=True).start()
    return job


def start_pull(store, url: str, api_key: str | None, item_id: str, kind: str | None = None,
               force: bool = False) -> Transfer:
    """Pull ``item_id`` from ``url`` into ``store`` in the background (``RemoteStore.pull``)."""
    from workbench.store import Store
    from workbench.store.transfer import RemoteStore

    home = Path(store.home)
    remote = RemoteStore(url, api_key, local=None)  # validates the URL here, in the caller
    url = remote.url

    def action(progress) -> str:
        local = Store(home)  # its own Store: the page's is read by other threads meanwhile
        RemoteStore(url, api_key, local=local).pull(item_id, kind, progress=progress, force=force)
        return f"Pulled {kind or 'entry'} '{item_id}' from {url}: it is in this store now."

    return _start((_root(store), url, "pull", kind, item_id), "pull", kind, item_id, url, action)


def start_push(store, url: str, api_key: str | None, item_id: str, kind: str | None = None,
               as_id: str | None = None) -> Transfer:
    """Push local ``item_id`` to ``url`` in the background (``RemoteStore.push``), under ``as_id``
    when given."""
    from workbench.store import Store
    from workbench.store.transfer import RemoteStore

    home = Path(store.home)
    url = RemoteStore(url, api_key, local=None).url
    as_id = (as_id or "").strip() or None

    def action(progress) -> str:
        entry = RemoteStore(url, api_key, local=Store(home)).push(item_id, kind, as_id=as_id, progress=progress)
        return f"Pushed {entry.kind} '{entry.id}' to {url}: it is in that store now."

    shown = as_id or item_id
    return _start((_root(store), url, "push", kind, shown), "push", kind, shown, url, action)


def transfers(store) -> list[Transfer]:
    """This store's transfers (running and finished, not dismissed), oldest first."""
    root = _root(store)
    with _LOCK:
        jobs = [j for j in _JOBS.values() if j.key[0] == root]
    return sorted(jobs, key=lambda j: j.started_at)


def dismiss(job: Transfer) -> None:
    """Forget a finished transfer (a running one stays)."""
    with _LOCK:
        if job.done and _JOBS.get(job.key) is job:
            del _JOBS[job.key]
