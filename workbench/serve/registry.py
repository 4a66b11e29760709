"""The models a server serves: each loaded once per installed build, with its own ``Batcher``.

``ModelRegistry(store, ids)`` serves ``ids`` (aliases resolved by the catalog), or with no ids
every installed model that can generate. ``get(name)`` returns the ``Batcher``; a name not
served raises ``ModelNotServedError`` (404) listing the valid ids. Models load on first use
(``preload()`` loads them up front).

Contract:
- One lock per model: loading (or exporting) model A never blocks a request for model B, and
  two requests for A load it once.
- The served-id listing (no ``ids``) is cached under a signature of the store's folders: the
  stat of ``models/``, ``cards/``, every card file and every entry's manifest. It is rebuilt only
  when that signature changes (an install, a removal, a card added, edited or deleted), never per
  request, and never probes the network. A custom card that does not parse is logged once (a
  warning naming the file and the fix) and skipped; the other models keep being served.
- Batchers are keyed by ``Store.fingerprint(model_id)``: after ``store install --force`` with
  other weights, or a remove and add under the same id, the next request loads the new build.
  The old batcher finishes the requests it holds, then is closed (requests it still holds after
  ``RETIRE_TIMEOUT_S`` end with a clear error).
- A batcher marked dead (its engine failed past recovery, see ``Batcher``) answered its requests
  with 503; the next request for that model builds a new one.
- A model removed from the store while served is dropped (its in-flight requests end with an
  error) and answered with a 404 that says how to reinstall it; after a reinstall the next
  request loads it again.

Apps (``workbench.apps``) are served beside the models, under the same name space:
- ``app_ids()`` lists the apps whose base model is served here (with fixed ``ids``: one of them;
  else any installed model that can generate). An app whose base is missing, not installed or
  not served is left out of the listing; a request for it gets a 404 saying what to do. An app
  whose id is also a model's is left out too (the model keeps the name; logged once).
- ``get(app_id)`` is the base model's ``Batcher``: apps on one base share its batcher (one load,
  one batch) with the base model itself. ``app_base(name)`` tells the routes a name is an app.
- The app listing is cached like the model listing, under the model signature plus the stat of
  ``apps/``, each app's ``manifest.json`` and ``app.toml`` (built-in apps ship in the package).
"""
from __future__ import annotations

import logging
import os
import threading
import time

from ..errors import CardError, ModelNotInstalledError, UnknownModelError, WorkbenchError
from ..runtime.loading import load_model
from .batching import Batcher
from .engine import make_engine
from .errors import ModelNotServedError, QueueFullError, ServerClosedError

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
RETIRE_TIMEOUT_S = 600.0  # how long a replaced build may finish its requests


def _stat_key(path) -> tuple:
    try:
        st = os.stat(path)
    except OSError:
        return (str(path), None)
    return (str(path), st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


class ModelRegistry:
    def __init__(self, store, ids: list[str] | None = None, backend: str = "torch", device: str = "cpu",
                 max_batch: int = 8, max_waiting: int = 32, metrics=None):
        self.store = store
        self.backend, self.device = backend, device
        self.max_batch, self.max_waiting = max_batch, max_waiting
        self.metrics = metrics
        self._fixed = None if not ids else [store.card(i).id for i in ids]  # unknown ids raise here
        for model_id in self._fixed or []:
            if not store.is_installed(model_id):
                raise WorkbenchError(f"{model_id} is not installed: run `workbench store install {model_id}` first.")
        self.batchers: dict[str, Batcher] = {}
        self._fingerprints: dict[str, str] = {}  # model id -> fingerprint of its batcher's build
        self._model_locks: dict[str, threading.Lock] = {}
        self._retiring: set[Batcher] = set()
        self._lock = threading.Lock()  # guards the dicts above; never held while loading
        # requests waiting on a model's load each hold a server worker thread (the pool prompt
        # preparation uses too): past this many, the next is told to retry instead of waiting
        self.max_load_waiters = max(1, min(max_waiting, 16))
        self._load_waiters = 0
        self._listing_lock = threading.Lock()
        self._listing: tuple[tuple, list[str]] | None = None  # (store signature, served ids)
        self._reported: set[str] = set()  # card problems already logged
        self._apps: tuple[tuple, dict[str, str], dict[str, str]] | None = None  # (signature, served, unserved)

    # --- which models ---------------------------------------------------------------------------

    def ids(self) -> list[str]:
        """The served model ids (see the module docstring for when the listing is re-read)."""
        if self._fixed is not None:
            return list(self._fixed)
        signature = self._signature()
        with self._listing_lock:
            if self._listing is None or self._listing[0] != signature:
                self._listing = (signature, self._installed_generators())
            return list(self._listing[1])

    def _signature(self) -> tuple:
        """What the listing depends on, from stat calls only (no file is read)."""
        models, cards = self.store.models_dir, self.store.cards_dir
        parts = [_stat_key(models), _stat_key(cards)]
        for folder, child in ((cards, None), (models, MANIFEST)):
            try:
                names = sorted(os.listdir(folder))
            except OSError:
                continue
            parts += [_stat_key(folder / n / child if child else folder / n) for n in names]
        return tuple(parts)

    def _installed_generators(self) -> list[str]:
        catalog = self.store.catalog
        try:
            catalog.reload()  # skips a malformed custom card, logged once (``catalog.problems``)
        except CardError as err:  # a catalog that stops at a bad card: keep its last good read
            self._report(str(err))
        served = []
        for card in catalog:
            if card.can("generate") and (self.store.models_dir / card.id / MANIFEST).is_file():
                try:
                    status = self.store.entry(card.id).status  # an installed entry is not probed online
                except OSError:  # removed while read: the next signature differs, so it is read again
                    continue
                if status == "installed":
                    served.append(card.id)
        return served

    # --- which apps -----------------------------------------------------------------------------

    def app_ids(self) -> list[str]:
        """The served app ids, sorted (see the module docstring for which apps are served)."""
        return sorted(self._app_listing()[0])

    def apps(self) -> dict[str, str]:
        """``{served app id: its base model id}``."""
        return dict(self._app_listing()[0])

    def app_base(self, name: str | None) -> str | None:
        """The base model id of the served app ``name``; None when ``name`` is a model's id or no
        served app's."""
        if not name or self._model_id(name) is not None:
            return None
        return self._app_listing()[0].get(name)

    def _app_listing(self) -> tuple[dict[str, str], dict[str, str]]:
        """``({served app id: base model id}, {unserved app id: why})``, cached by signature."""
        models = self.ids()
        signature = (self._signature(), tuple(models), self._apps_signature())
        with self._listing_lock:
            if self._apps is None or self._apps[0] != signature:
                self._apps = (signature, *self._read_apps(models))
            return self._apps[1], self._apps[2]

    def _apps_signature(self) -> tuple:
        root = self.store.home / "apps"
        parts = [_stat_key(root)]
        try:
            names = sorted(os.listdir(root))
        except OSError:
            return tuple(parts)
        for n in names:
            parts += [_stat_key(root / n / MANIFEST), _stat_key(root / n / "app.toml")]
        return tuple(parts)

    def _read_apps(self, models: list[str]) -> tuple[dict[str, str], dict[str, str]]:
        # the apps package sits above the store: imported when apps are first listed
        from ..apps.catalog import list_apps

        problems: list = []
        served, unserved = {}, {}
        for entry in list_apps(self.store, problems):
            card = entry.card
            if self._model_id(card.id) is not None:
                self._report(f"the app {card.id} has a model's id; the model is served under it. Give the app "
                             f"another id: `workbench apps export {card.id} --out F.gptapp`, `workbench apps "
                             f"remove {card.id}`, `workbench apps import F.gptapp --as NEW_ID`.", "an app")
                continue
            base = self._model_id(card.base_model) or card.base_model
            if entry.problem:
                unserved[card.id] = f"App '{card.id}' {entry.problem}"
            elif base not in models:
                unserved[card.id] = (f"App '{card.id}' runs on {base}, which this server does not serve; start "
                                     f"the server with it (`workbench serve {base}`).")
            else:
                served[card.id] = base
        for path, message in problems:
            self._report(f"{path}: {message}", "an app")
        return served, unserved

    def _model_id(self, name: str) -> str | None:
        try:
            return self.store.card(name).id
        except UnknownModelError:
            return None

    def _report(self, problem: str, what: str = "a model card") -> None:
        if problem not in self._reported:
            self._reported.add(problem)
            log.warning("Skipping %s the server cannot serve: %s", what, problem)

    def preload(self) -> None:
        for model_id in self.ids():
            self.get(model_id)

    # --- batchers -------------------------------------------------------------------------------

    def get(self, name: str) -> Batcher:
        """The batcher of model ``name``, or of the base model of app ``name``."""
        ids = self.ids()
        model_id = self._model_id(name) if name else None
        if model_id not in ids and model_id not in self.batchers:
            served, unserved = self._app_listing() if name else ({}, {})
            if name in served:
                model_id = served[name]
            elif name in unserved:
                raise ModelNotServedError(unserved[name])
            else:
                raise ModelNotServedError(
                    f"Model {name!r} is not served here. Served models: {', '.join(ids) or 'none'}; apps: "
                    f"{', '.join(sorted(served)) or 'none'} (GET /v1/models lists them)."
                )
        try:
            fingerprint = self.store.fingerprint(model_id) if self.store.is_installed(model_id) else None
        except ModelNotInstalledError:
            fingerprint = None
        if fingerprint is None:
            self._drop(model_id)
            raise ModelNotServedError(
                f"{model_id} was removed from the store while the server was running. Reinstall it "
                f"with `workbench store install {model_id}`; the server picks it up on the next request."
            )
        with self._lock:
            batcher = self.batchers.get(model_id)
            if self._usable(model_id, batcher, fingerprint):
                return batcher
            model_lock = self._model_locks.setdefault(model_id, threading.Lock())
            if model_lock.locked() and self._load_waiters >= self.max_load_waiters:
                raise QueueFullError(
                    f"{model_id} is still loading and {self._load_waiters} requests already wait for a "
                    "model to load; retry after the Retry-After seconds (a first ONNX export can take minutes).",
                    retry_after=5,
                )
            self._load_waiters += 1
        try:
            with model_lock:  # only requests for this model wait here
                return self._load(model_id, fingerprint)
        finally:
            with self._lock:
                self._load_waiters -= 1

    def _load(self, model_id: str, fingerprint: str) -> Batcher:
        """Under the model's lock: the batcher of the installed build, made if needed."""
        with self._lock:
            old = self.batchers.get(model_id)
            if self._usable(model_id, old, fingerprint):
                return old  # another request loaded it meanwhile
        if old is not None and old.dead:
            log.warning("Rebuilding the batcher of %s, which died: %s", model_id, old.health())
        model = load_model(model_id, store=self.store, device=self.device)
        engine = make_engine(model, self.backend, store=self.store)
        batcher = Batcher(model, engine, self.max_batch, self.max_waiting, self.metrics)
        with self._lock:
            old = self.batchers.get(model_id)
            self.batchers[model_id], self._fingerprints[model_id] = batcher, fingerprint
        if old is not None:
            if old.dead:
                old.close()  # its requests were already answered with the reason (503)
            else:
                self._retire(model_id, old)
        return batcher

    def _usable(self, model_id: str, batcher: Batcher | None, fingerprint: str) -> bool:
        """A batcher serves the next request when it is of the installed build and not dead (a
        dead one is rebuilt once per request that finds it dead; a stuck one recovers by itself)."""
        return batcher is not None and not batcher.dead and self._fingerprints.get(model_id) == fingerprint

    def _retire(self, model_id: str, batcher: Batcher) -> None:
        """Close a replaced build's batcher once the requests it holds are done."""
        with self._lock:
            self._retiring.add(batcher)

        def wait_then_close():
            deadline = time.monotonic() + RETIRE_TIMEOUT_S
            while (batcher.active_count or batcher.queue_depth) and time.monotonic() < deadline:
                time.sleep(0.05)
            batcher.close(error=ServerClosedError(
                f"{model_id} was reinstalled while this request ran; send it again to use the new build."
            ))
            with self._lock:
                self._retiring.discard(batcher)

        threading.Thread(target=wait_then_close, name=f"retire-{model_id}", daemon=True).start()

    def _drop(self, model_id: str) -> None:
        with self._lock:
            batcher = self.batchers.pop(model_id, None)
            self._fingerprints.pop(model_id, None)
        if batcher is not None:
            batcher.close(error=ServerClosedError(
                f"{model_id} was removed from the store during this request; reinstall it and retry."
            ))

    def close(self) -> None:
        with self._lock:
            batchers = list(self.batchers.values()) + list(self._retiring)
            self.batchers, self._fingerprints, self._retiring = {}, {}, set()
        for b in batchers:
            b.close()
