"""Pull throughput over loopback against a plain copy of the same folder, and the bytes a resumed
pull sends again. Serves ``--model`` (default: the real SmolLM2) from the default store with the
real store-only server (uvicorn on 127.0.0.1), pulls it into a temp store root.

Prints a table for people, then one JSON line for scripts."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from workbench.serve.keys import KeyStore
    from workbench.serve.server import ServerThread, build_app
    from workbench.store import Store
    from workbench.store.remote import RemoteStore
    from workbench.store.transfer import partial_dir

    origin = Store()
    src = origin.path(args.model)
    from workbench.store.entries import transfer_files

    size = sum(m["size"] for m in transfer_files(origin.manifest(args.model)).values())  # what travels
    app, registry = build_app(origin, store_only=True)
    keys = KeyStore(origin.home)
    name = f"pull-bench-{int(time.time())}"
    key = keys.create(name, "pull")
    copies, pulls = [], []
    with tempfile.TemporaryDirectory(dir=origin.home) as tmp, ServerThread(app, host="127.0.0.1") as server:
        tmp = Path(tmp)
        try:
            for i in range(args.repeats):
                t = time.perf_counter()
                shutil.copytree(src, tmp / f"copy-{i}")
                copies.append(time.perf_counter() - t)
                local = Store(tmp / f"pull-{i}")
                t = time.perf_counter()
                RemoteStore(server.url, key, local=local).pull(args.model, "model")
                pulls.append(time.perf_counter() - t)
            # resume: a pull stopped after half the bytes of the biggest file, then pulled again
            manifest = origin.manifest(args.model)
            big = max(manifest["files"].items(), key=lambda kv: kv[1]["size"])
            local = Store(tmp / "resume")
            partial_dir(local).mkdir(parents=True)
            half = big[1]["size"] // 2
            with open(src / big[0], "rb") as fh:
                (partial_dir(local) / big[1]["sha256"]).write_bytes(fh.read(half))
            sent = []
            from workbench.store.remote import StoreClient

            real = StoreClient.download

            def counting(self, sha, out, offset=0, on_bytes=lambda b: None):
                return real(self, sha, out, offset, lambda b: (sent.append(len(b)), on_bytes(b)))

            StoreClient.download = counting
            try:
                RemoteStore(server.url, key, local=local).pull(args.model, "model")
            finally:
                StoreClient.download = real
        finally:
            keys.revoke(name)
            registry.close()
    copy_s, pull_s = min(copies), min(pulls)
    resent = sum(sent)
    expected = size - half
    print(f"{'':<22} {'seconds (best of ' + str(args.repeats) + ')':>22} {'MB/s':>10}")
    print(f"{'plain copy':<22} {copy_s:>22.3f} {size / copy_s / 1e6:>10.1f}")
    print(f"{'pull over loopback':<22} {pull_s:>22.3f} {size / pull_s / 1e6:>10.1f}")
    print(f"pull / copy throughput: {copy_s / pull_s:.2f}x (goal >= 0.5x)")
    print(f"resumed pull sent {resent:,} bytes; the stopped pull had not written {expected:,} (of {size:,})")
    print(json.dumps({"model": args.model, "bytes": size, "copy_s": copies, "pull_s": pulls,
                      "ratio": copy_s / pull_s, "resumed_sent": resent, "resume_expected": expected}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
