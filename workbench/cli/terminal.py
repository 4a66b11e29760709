"""What every command shares: a progress bar on the terminal, installing a model on first use,
and writing a JSON result to a file (atomically) or stdout."""
from __future__ import annotations

import json
import sys

from ..common import atomic_write_text
from ..store import Store


class TerminalProgress:
    """A one-line progress bar on stderr for ``progress(fraction, message)`` callbacks."""

    def __init__(self, stream=None, width: int = 30):
        self.stream, self.width, self.last = stream or sys.stderr, width, ""  # stderr at call time

    def __call__(self, fraction: float, message: str) -> None:
        filled = int(self.width * min(max(fraction, 0.0), 1.0))
        line = f"\r[{'#' * filled}{'.' * (self.width - filled)}] {fraction * 100:5.1f}% {message[:60]:<60}"
        if line != self.last:
            self.stream.write(line)
            self.stream.flush()
            self.last = line
        if fraction >= 1.0:
            self.stream.write("\n")


def ensure_installed(store: Store, name: str) -> str:
    """The model's id, installing it first (with a progress bar) when it is not installed yet."""
    card = store.card(name)
    if not store.is_installed(card.id):
        store.install(card.id, progress=TerminalProgress())
    return card.id


def write_json(target: str | None, data) -> None:
    """``target`` '-' prints to stdout; a path is written whole or not at all; None does nothing."""
    if target == "-":
        print(json.dumps(data, indent=2, ensure_ascii=False))
    elif target:
        atomic_write_text(target, json.dumps(data, indent=2, ensure_ascii=False))
        print(f"wrote {target}", file=sys.stderr)
