"""The parent's side of an export: run the builder in a child process, relay its progress lines
(JSON, one per phase) and move through long phases on the clock, enforce a time limit, and turn
a failure into an ``ExportError`` that says why and what to do."""
from __future__ import annotations

import errno
import json
import os
import queue
import subprocess
import threading
import time
from pathlib import Path

from ..common import Progress
from ..errors import DiskSpaceError, ExportError
from .spec import export_versions

_DISK_FULL = os.strerror(errno.ENOSPC)  # "No space left on device"

def run_child(args: list[str], staging: Path, progress: Progress, estimate: float, timeout_s: float | None) -> None:
    """Run the exporter child, relaying its progress lines and ticking through long phases."""
    log_path = staging / "export.log"
    shown = [0.0]

    def report(fraction: float, message: str) -> None:  # never moves backwards
        shown[0] = max(shown[0], min(fraction, 1.0))
        progress(shown[0], message)

    env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    root = str(Path(__file__).resolve().parents[2])  # the folder holding the workbench package
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    with open(log_path, "w") as log:
        child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=root)
        lines: queue.Queue = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(x) for x in child.stdout], daemon=True)
        reader.start()
        start = time.monotonic()
        phase_lo, phase_hi, phase_msg, phase_t0 = 0.0, 0.05, "starting the exporter", start
        try:
            while True:
                try:
                    line = lines.get(timeout=0.5)
                    try:
                        msg = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    phase_lo, phase_hi, phase_msg = msg["lo"], msg["hi"], msg["message"]
                    phase_t0 = time.monotonic()
                    report(phase_lo, phase_msg)
                except queue.Empty:
                    if child.poll() is not None and not reader.is_alive():
                        break
                    # move through the phase on the clock so a long trace still shows life
                    span = max(estimate * (phase_hi - phase_lo), 1.0)
                    done = min((time.monotonic() - phase_t0) / span, 0.95)
                    elapsed = time.monotonic() - start
                    report(phase_lo + (phase_hi - phase_lo) * done, f"{phase_msg} ({elapsed:.0f} s)")
                if timeout_s is not None and time.monotonic() - start > timeout_s:
                    raise ExportError(
                        f"The export took longer than {timeout_s:.0f} s and was stopped; nothing was kept. "
                        "Free the CPU (other jobs slow it down) or raise the time limit."
                    )
        finally:
            if child.poll() is None:
                child.kill()
            child.wait()
    if child.returncode != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()
        reason = next((l for l in reversed(tail) if l.strip() and not l.startswith(" ")), "no output")
        if child.returncode < 0:
            reason = f"the exporter process was killed (signal {-child.returncode}); low memory is the usual cause"
        elif any(_DISK_FULL in line for line in tail):  # the child's OSError(ENOSPC), as its traceback says it
            raise DiskSpaceError(
                f"The disk under {staging.parent.parent} filled up while exporting to ONNX; nothing was kept. A real "
                "model's export needs 0.5-1.7 GB: free space (`workbench store remove ID`) and export again."
            )
        raise ExportError(
            f"Exporting to ONNX failed: {reason[:500]}. Nothing was kept. A real model needs about 1.2 GB of "
            "free RAM and 0.5-1.7 GB of disk; if those are fine, the architecture may not export with "
            f"these library versions ({', '.join(f'{k} {v}' for k, v in export_versions().items())})."
        )
