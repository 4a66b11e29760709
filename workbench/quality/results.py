"""Perplexity measured on this machine, per model, dataset and backend, kept in the store
(``<store>/bench/quality.json``) like the measured speeds. Light: reading needs no torch."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..common import atomic_write_text
from ..store import Store

if TYPE_CHECKING:
    from .evaluation import PerplexityResult

QUALITY_FILE = "quality.json"


def quality_path(store: Store) -> Path:
    return store.bench_dir / QUALITY_FILE


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, json.JSONDecodeError):
        return {}  # missing or unreadable: nothing measured yet


def record_quality(store: Store, result: PerplexityResult) -> Path:
    """Merge one result into the quality file (atomic write, under the store's lock)."""
    path = quality_path(store)
    with store.lock("quality"):
        data = _read(path)
        data.setdefault(result.model, {}).setdefault(result.dataset, {})[result.backend] = result.to_json()
        atomic_write_text(path, json.dumps(data, indent=2))
    return path


def measured_quality(store: Store, model_id: str, dataset: str | None = None) -> dict[str, dict]:
    """``{backend: result json}`` for one model on ``dataset`` (all datasets when None: then
    ``{dataset: {backend: ...}}``); empty when never measured."""
    entry = _read(quality_path(store)).get(store.card(model_id).id, {})
    return entry if dataset is None else dict(entry.get(dataset, {}))


def forget_quality(store: Store, model_id: str) -> None:
    """Drop a model's measurements (when the model itself is removed)."""
    path = quality_path(store)
    with store.lock("quality"):
        data = _read(path)
        if data.pop(model_id, None) is not None:
            atomic_write_text(path, json.dumps(data, indent=2))
