"""The models a server serves: each loaded once, with its own ``Batcher``.

``ModelRegistry(store, ids)`` serves ``ids`` (aliases resolved by the catalog), or with no ids
every installed model that can generate, as installed at each request. Models load on first use
(``preload()`` loads them up front). ``get(name)`` returns the ``Batcher``; a name not served
raises ``ModelNotServedError`` (404) listing the valid ids. A model removed from the store while
served is dropped (its in-flight requests end with an error) and answered with a 404 that says how
to reinstall it; after a reinstall the next request loads it again.
"""
from __future__ import annotations

import threading

from ..errors import UnknownModelError, WorkbenchError
from ..runtime.loading import load_model
from .batching import Batcher
from .engine import make_engine
from .errors import ModelNotServedError, ServerClosedError


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
        self._lock = threading.Lock()

    def ids(self) -> list[str]:
        if self._fixed is not None:
            return list(self._fixed)
        return [e.card.id for e in self.store.list() if e.status == "installed" and e.card.can("generate")]

    def preload(self) -> None:
        for model_id in self.ids():
            self.get(model_id)

    def get(self, name: str) -> Batcher:
        ids = self.ids()
        try:
            model_id = self.store.card(name).id if name else None
        except UnknownModelError:
            model_id = None
        if model_id not in ids and model_id not in self.batchers:
            raise ModelNotServedError(
                f"Model {name!r} is not served here. Served models: {', '.join(ids) or 'none'} "
                "(GET /v1/models lists them)."
            )
        if not self.store.is_installed(model_id):
            self._drop(model_id)
            raise ModelNotServedError(
                f"{model_id} was removed from the store while the server was running. Reinstall it "
                f"with `workbench store install {model_id}`; the server picks it up on the next request."
            )
        with self._lock:
            batcher = self.batchers.get(model_id)
            if batcher is None:
                model = load_model(model_id, store=self.store, device=self.device)
                engine = make_engine(model, self.backend, store=self.store)
                batcher = Batcher(model, engine, self.max_batch, self.max_waiting, self.metrics)
                self.batchers[model_id] = batcher
            return batcher

    def _drop(self, model_id: str) -> None:
        with self._lock:
            batcher = self.batchers.pop(model_id, None)
        if batcher is not None:
            batcher.close(error=ServerClosedError(
                f"{model_id} was removed from the store during this request; reinstall it and retry."
            ))

    def close(self) -> None:
        with self._lock:
            batchers, self.batchers = list(self.batchers.values()), {}
        for b in batchers:
            b.close()
