"""Pull throughput over loopback against local copies of the same folder, and the bytes a
resumed pull sends again.

The origin is the default store (``--model``, default the real SmolLM2), served by the real
store-only app under uvicorn on 127.0.0.1 in a **separate process** (as on another machine: the
server does not share the puller's interpreter). Each repeat times, in turn, with ``os.sync()``
before each so none pays for another's dirty pages, and with the source already in the page
cache:

- ``plain copy``: ``shutil.copytree`` (in-kernel copy, no check, no fsync);
- ``checked copy``: each file read, sha256-hashed and written in one pass (one thread, no
  fsync): what any transfer that checks every byte must at least do;
- ``sha256 only``: hashing the bytes, nothing written: the ceiling of any checked transfer of
  one file, since one sha256 runs on one core;
- ``pull over loopback``: ``RemoteStore.pull`` into a fresh store root: HTTP, sha256 of every
  byte, resume files, the install primitive (fsync of every file, manifest, one rename).

Then a pull that finds half of the biggest file already under ``.partial/`` counts the bytes the
server sends. Prints a table for people, then one JSON line for scripts (raw seconds of every
repeat, the CPU, its flags, the load before and after)."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

SERVE = """
import sys, uvicorn
from workbench.serve.server import build_app
from workbench.store import Store
app, registry = build_app(Store(), store_only=True)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False, lifespan="off")
"""
BLOCK = 1 << 20


def checked_copy(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` (folders), hashing every byte on the way (read, hash, write)."""
    buf = bytearray(BLOCK)
    for path in sorted(src.rglob("*")):
        out = dst / path.relative_to(src)
        if path.is_dir():
            out.mkdir(parents=True, exist_ok=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with open(path, "rb", buffering=0) as fin, open(out, "wb", buffering=0) as fout:
            while n := fin.readinto(buf):
                view = memoryview(buf)[:n]
                digest.update(view)
                fout.write(view)
        digest.hexdigest()


def hash_only(src: Path) -> None:
    buf = bytearray(BLOCK)
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with open(path, "rb", buffering=0) as fin:
            while n := fin.readinto(buf):
                digest.update(memoryview(buf)[:n])


def timed(fn) -> float:
    os.sync()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cpu_info() -> dict:
    from workbench.latency.environment import _cpu_model, cpu_flags

    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    line = next((x for x in text.splitlines() if x.startswith(("flags", "Features"))), "")
    have = set(line.split(":", 1)[-1].split())
    return {"cpu": _cpu_model(), "cpu_flags": cpu_flags(), "sha_extensions": sorted(have & {"sha_ni", "sha1", "sha2"}),
            "logical_cpus": os.cpu_count(), "python": sys.version.split()[0]}


def serve(port: int) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", SERVE, str(port)])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).close()
            return child
        except OSError:
            if child.poll() is not None:
                break
            time.sleep(0.1)
    child.kill()
    raise SystemExit(f"the store-only server did not start on 127.0.0.1:{port}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from workbench.serve.keys import KeyStore
    from workbench.serve.server import free_port
    from workbench.store import Store
    from workbench.store.entries import transfer_files
    from workbench.store.remote import StoreClient
    from workbench.store.transfer import RemoteStore, partial_dir

    load_before = os.getloadavg()
    origin = Store()
    src = origin.path(args.model)
    manifest = origin.manifest(args.model)
    size = sum(m["size"] for m in transfer_files(manifest).values())  # what travels
    keys = KeyStore(origin.home)
    name = f"pull-bench-{int(time.time())}"
    key = keys.create(name, "pull")
    port = free_port("127.0.0.1")
    times: dict[str, list[float]] = {"plain copy": [], "checked copy": [], "sha256 only": [], "pull over loopback": []}
    child = serve(port)
    url = f"http://127.0.0.1:{port}"
    try:
        with tempfile.TemporaryDirectory(dir=origin.home) as tmp:
            tmp = Path(tmp)
            hash_only(src)  # the source in the page cache for every side
            for i in range(args.repeats):
                runs = {
                    "plain copy": lambda: shutil.copytree(src, tmp / "copy"),
                    "checked copy": lambda: checked_copy(src, tmp / "copy"),
                    "sha256 only": lambda: hash_only(src),
                    "pull over loopback": lambda: RemoteStore(url, key, local=Store(tmp / "copy")).pull(args.model, "model"),
                }
                for label, fn in runs.items():
                    times[label].append(timed(fn))
                    shutil.rmtree(tmp / "copy", ignore_errors=True)
            # resume: a pull stopped after half the bytes of the biggest file, then pulled again
            big = max(manifest["files"].items(), key=lambda kv: kv[1]["size"])
            local = Store(tmp / "resume")
            partial_dir(local).mkdir(parents=True)
            half = big[1]["size"] // 2
            with open(src / big[0], "rb") as fh:
                (partial_dir(local) / big[1]["sha256"]).write_bytes(fh.read(half))
            sent = []
            real = StoreClient.download

            def counting(self, sha, out, offset=0, on_bytes=lambda b: None):
                return real(self, sha, out, offset, lambda b: (sent.append(len(b)), on_bytes(b)))

            StoreClient.download = counting
            try:
                RemoteStore(url, key, local=local).pull(args.model, "model")
            finally:
                StoreClient.download = real
    finally:
        child.terminate()
        child.wait(10)
        keys.revoke(name)
    best = {label: min(v) for label, v in times.items()}
    pull_s = best["pull over loopback"]
    resent, expected = sum(sent), size - half
    load_after = os.getloadavg()
    print(f"{args.model}: {size:,} bytes; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"{'':<20} {'best s':>8} {'median s':>9} {'MB/s':>8} {'pull / this':>12}")
    for label, values in times.items():
        print(f"{label:<20} {best[label]:>8.3f} {statistics.median(values):>9.3f} {size / best[label] / 1e6:>8.0f} "
              f"{best[label] / pull_s:>11.2f}x")
    print(f"pull / plain copy throughput: {best['plain copy'] / pull_s:.2f}x (goal >= 0.5x); "
          f"pull / checked copy: {best['checked copy'] / pull_s:.2f}x")
    print(f"resumed pull sent {resent:,} bytes; the stopped pull had not written {expected:,} (of {size:,})")
    print(json.dumps({"model": args.model, "bytes": size, "seconds": times, "best_s": best,
                      "ratio_plain_copy": best["plain copy"] / pull_s, "ratio_checked_copy": best["checked copy"] / pull_s,
                      "resumed_sent": resent, "resume_expected": expected, "server": "separate process, uvicorn (h11)",
                      "load_average_before": load_before, "load_average_after": load_after, **cpu_info()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
