"""Helpers for browser tests: waiting for Streamlit and saving screenshots."""
from __future__ import annotations

import os
from pathlib import Path

from helpers import ROOT

SHOTS = Path(os.environ.get("WORKBENCH_SHOTS", ROOT / "artifacts" / "screenshots"))


def wait_idle(pg, timeout: float = 60_000) -> None:
    """Wait until Streamlit has finished the current rerun."""
    pg.wait_for_timeout(300)
    pg.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=timeout)
    pg.wait_for_timeout(200)


def shot(locator_or_page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    locator_or_page.screenshot(path=str(path))
    return path
