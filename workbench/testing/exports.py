"""Tiny-model ONNX exports made once per test session and copied into each test's store.

An export of a tiny model takes seconds (a child process traces it); most tests only need one to
exist. ``seed_export(store, "tiny-llama")`` exports into a private session store built from the
same model folders (so the weights' fingerprint matches) and copies the result into ``store``.
Tests of the exporter itself call ``onnx_export.export_model`` directly instead.
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

_SEED = {}


def _seed_store():
    from workbench.store import Store

    if "store" not in _SEED:
        home = Path(tempfile.mkdtemp(prefix="onnx-seed-"))
        atexit.register(shutil.rmtree, home, True)
        _SEED["store"] = Store(home)
    return _SEED["store"]


def seed_export(store, model_id: str, variant: str = "fp32"):
    """Make sure ``store`` holds a good export of ``model_id`` (a tiny model) and return it."""
    from workbench.onnx.cache import DERIVED, cached_export, export_model

    seed = _seed_store()
    if model_id not in seed.catalog:
        source = store.card(model_id).sources[0]
        seed.add(model_id, local_dir=source.path, name=model_id)
    export = export_model(seed, model_id, variant)
    if variant in DERIVED:
        seed_export(store, model_id, "fp32")
    target = store.exports_dir / model_id / export.directory.name
    if not target.exists():
        shutil.copytree(export.directory, target)
    found = cached_export(store, model_id, variant)
    assert found is not None, "the seeded export was not accepted by the test store"
    return found
