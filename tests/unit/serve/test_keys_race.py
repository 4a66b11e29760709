"""Keys changed by two processes at once (the CLI revoking while the API page creates): every
change survives, and no revoked key comes back."""
from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap

from workbench.serve.keys import KeyStore

N = 60  # changes per process
TIMEOUT = 120

WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from workbench.serve.keys import KeyStore

    home, action, prefix, n, go = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), Path(sys.argv[5])
    deadline = time.monotonic() + 60
    while not go.exists() and time.monotonic() < deadline:  # start together
        time.sleep(0.001)
    keys = KeyStore(home)
    for i in range(n):
        if action == "create":
            keys.create(f"{prefix}{i}")
        else:
            assert keys.revoke(f"{prefix}{i}"), f"{prefix}{i} was not there to revoke"
""")


def test_create_and_revoke_racing_from_two_processes_lose_nothing(tmp_path):
    keys = KeyStore(tmp_path)
    old = {f"old{i}": keys.create(f"old{i}") for i in range(N)}
    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), action, prefix, str(N), str(go)],
                         stderr=subprocess.PIPE, text=True)
        for action, prefix in (("create", "new"), ("revoke", "old"))
    ]
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=TIMEOUT)
        assert p.returncode == 0, err
    names = {k.name for k in KeyStore(tmp_path).list()}
    assert names == {f"new{i}" for i in range(N)}  # every created key kept, every revoked one gone
    fresh = KeyStore(tmp_path)
    assert all(fresh.check(key) is None for key in old.values())


def test_a_cached_reader_sees_a_change_with_the_same_size_and_mtime(tmp_path):
    """A rewrite in one clock tick with a same-size file (a key replaced under the same name):
    a cache keyed on (mtime, size) would keep accepting the replaced key."""
    import json
    import os

    keys = KeyStore(tmp_path)
    old_key = keys.create("laptop")
    reader = KeyStore(tmp_path)
    assert reader.check(old_key) == "laptop"
    st = keys.path.stat()
    data = json.loads(keys.path.read_text())
    new_key = "wb-" + "x" * len(old_key[3:])
    data["keys"]["laptop"]["sha256"] = hashlib.sha256(new_key.encode()).hexdigest()
    keys.path.write_text(json.dumps(data, indent=1))
    os.utime(keys.path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert keys.path.stat().st_size == st.st_size and keys.path.stat().st_mtime_ns == st.st_mtime_ns
    assert reader.check(old_key) is None
    assert reader.check(new_key) == "laptop"
