"""What every command shares: a progress bar on the terminal, installing a model on first use,
and writing a JSON result to a file (atomically) or stdout."""
from __future__ import annotations

import json
import sys

from tqdm import tqdm

from ..common import atomic_write_text
from ..store import Store

_STEPS = 1000  # the bar counts thousandths of the work


class _OtherBarsQuiet:
    """Turns huggingface_hub's and transformers' own tqdm bars off, and back to what they were.

    transformers reads huggingface_hub's setting when it is first imported, so quieting the hub
    also covers a transformers imported while our bar is shown. Only the light
    ``huggingface_hub.utils`` is imported here; transformers only if something already did."""

    def __init__(self):
        self.hub_was_on = self.transformers_was_on = False

    def __enter__(self):
        from huggingface_hub import utils as hub

        self.hub_was_on = not hub.are_progress_bars_disabled()
        transformers = sys.modules.get("transformers.utils.logging")
        self.transformers_was_on = transformers is not None and transformers.is_progress_bar_enabled()
        if transformers is not None:
            transformers.disable_progress_bar()
        hub.disable_progress_bars()
        return self

    def __exit__(self, *exc):
        from huggingface_hub import utils as hub

        transformers = sys.modules.get("transformers.utils.logging")
        if transformers is not None and self.transformers_was_on:
            transformers.enable_progress_bar()  # sets the hub's on too: put the hub back below
        if self.hub_was_on:
            hub.enable_progress_bars()
        else:
            hub.disable_progress_bars()


class TerminalProgress:
    """A ``progress(fraction, message)`` callback drawn as one tqdm bar on stderr.

    ``fraction`` is clamped to [0, 1]; it may go back (a new phase), the bar follows. At 1.0 the
    bar is finished with its line; a later call starts a new bar. While a bar is shown,
    transformers' and huggingface_hub's own bars are off, so theirs never share its line.
    ``close()`` ends a bar that never reached 1.0 (also done by ``with TerminalProgress() as p``)."""

    def __init__(self, stream=None):
        self.stream = stream  # None: sys.stderr when a bar starts (so pytest's capture sees it)
        self.bar: tqdm | None = None
        self._quiet: _OtherBarsQuiet | None = None

    def __call__(self, fraction: float, message: str) -> None:
        done = round(_STEPS * min(max(fraction, 0.0), 1.0))
        if self.bar is None:
            self._quiet = _OtherBarsQuiet().__enter__()
            self.bar = tqdm(total=_STEPS, initial=done, desc=message[:60], file=self.stream or sys.stderr,
                            dynamic_ncols=True, bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")
        self.bar.set_description_str(message[:60], refresh=False)
        if done >= self.bar.n:
            self.bar.update(done - self.bar.n)
        else:
            self.bar.n = done
            self.bar.refresh()
        if done >= _STEPS:
            self.close()

    def close(self) -> None:
        """Finish the bar on its line and give the other libraries their bars back."""
        if self.bar is not None:
            self.bar.close()  # drawn once more: the last message and fraction, whatever tqdm skipped
            self.bar = None
        if self._quiet is not None:
            self._quiet.__exit__(None, None, None)
            self._quiet = None

    def __enter__(self) -> TerminalProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def ensure_installed(store: Store, name: str) -> str:
    """The model's id, installing it first (with a progress bar) when it is not installed yet."""
    card = store.card(name)
    if not store.is_installed(card.id):
        with TerminalProgress() as bar:  # closed (and the other bars back) even if the install fails
            store.install(card.id, progress=bar)
    return card.id


def write_json(target: str | None, data) -> None:
    """``target`` '-' prints to stdout; a path is written whole or not at all; None does nothing."""
    if target == "-":
        print(json.dumps(data, indent=2, ensure_ascii=False))
    elif target:
        atomic_write_text(target, json.dumps(data, indent=2, ensure_ascii=False))
        print(f"wrote {target}", file=sys.stderr)


def verify_verdict(item_id: str, problems: list[str], ok_detail: str, fix: str) -> int:
    """Print a verify result: ``ID: ok (detail)`` and 0, or ``ID: DAMAGED``, each problem and the
    fix on stderr, and 1."""
    if not problems:
        print(f"{item_id}: ok ({ok_detail})")
        return 0
    print(f"{item_id}: DAMAGED", file=sys.stderr)
    for p in problems:
        print(f"  {p}", file=sys.stderr)
    print(fix, file=sys.stderr)
    return 1
