"""Tokens/s measured on this machine, per model and backend, kept in the store
(``<store>/bench/speeds.json``) for the Store page's cards. Light: reading needs no torch."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..common import atomic_write_text
from ..runtime.backends import ALL_BACKENDS
from ..store import Store

if TYPE_CHECKING:
    from .results import BenchResult

SPEEDS_FILE = "speeds.json"


def speeds_path(store: Store) -> Path:
    return store.bench_dir / SPEEDS_FILE


def speed_key(backend: str, device: str) -> str:
    return backend if device == "cpu" else f"{backend} ({device})"


def record_speeds(store: Store, result: BenchResult) -> Path:
    """Merge a result's tokens/s into the speeds file (atomic write, under the store's lock)."""
    path = speeds_path(store)
    with store.lock("speeds"):
        data = _read(path)
        entry = data.setdefault(result.model, {})
        for r in result.results:
            entry[speed_key(r.backend, r.device)] = {
                "tokens_per_s": r.tokens_per_s,
                "decode_p50_ms": r.decode.p50,
                "new_tokens": r.new_tokens,
                "threads": r.settings.get("threads"),
                "cpu": result.env.get("cpu"),
                "cpu_flags": result.env.get("cpu_flags"),
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        atomic_write_text(path, json.dumps(data, indent=2))
    return path


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, json.JSONDecodeError):
        return {}  # a missing or unreadable file means nothing measured yet


def measured_speeds(store: Store, model_id: str) -> dict[str, float]:
    """Tokens/s measured on this machine per backend (``{backend name: tokens/s}``),
    CPU first, in the backends' own order; empty when the model was never benchmarked."""

    def order(key: str):
        name, _, device = key.partition(" (")
        return (device, ALL_BACKENDS.index(name) if name in ALL_BACKENDS else len(ALL_BACKENDS), key)

    entry = _read(speeds_path(store)).get(store.card(model_id).id, {})
    return {k: float(entry[k]["tokens_per_s"]) for k in sorted(entry, key=order)
            if isinstance(entry[k], dict) and isinstance(entry[k].get("tokens_per_s"), (int, float))}
