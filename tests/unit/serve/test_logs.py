"""No secret in any log line: a real ``workbench serve`` process (loopback, a bounded handful of
requests) is sent keys in the Authorization header, in JSON bodies and in URLs (``?api_key=``,
a common mistake), then its whole log is searched for the key strings."""
from __future__ import annotations

import logging

import requests

from workbench.serve.keys import KeyStore
from workbench.serve.server import RedactingFormatter, redact, start_background, state_path, stop_background

TIMEOUT = 60


def test_keys_sent_anywhere_never_reach_the_server_log(tiny_store):
    keys = KeyStore(tiny_store.home)
    good, other = keys.create("good"), keys.create("other")
    revoked = keys.create("gone")
    keys.revoke("gone")
    wrong = "wb-" + "Q" * 43
    state = start_background(tiny_store.home, ["tiny-gpt2"], port=None, timeout=180)
    try:
        url, auth = state.url, {"Authorization": f"Bearer {good}"}
        r = requests.get(f"{url}/v1/models?api_key={good}", timeout=TIMEOUT)  # the key in the URL
        assert r.status_code == 401 and "never in the URL" in r.json()["error"]["message"]
        r = requests.post(f"{url}/api/generate?model=tiny-gpt2&key={other}&token={revoked}",
                          data={"text": "Hi", "max_new_tokens": "2"}, timeout=TIMEOUT)
        assert r.status_code == 401
        assert requests.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {wrong}"},
                            timeout=TIMEOUT).status_code == 401
        assert requests.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {revoked}"},
                            timeout=TIMEOUT).status_code == 401
        assert requests.get(f"{url}/v1/models", headers=auth, timeout=TIMEOUT).status_code == 200
        r = requests.post(f"{url}/v1/completions", headers=auth, timeout=TIMEOUT,  # keys in a body
                          json={"model": "tiny-gpt2", "prompt": f"my key is {other}", "max_tokens": 2,
                                "user": good})
        assert r.status_code == 200, r.text
        r = requests.post(f"{url}/v1/completions", headers=auth, timeout=TIMEOUT,  # a 422 that names fields
                          json={"model": "tiny-gpt2", "prompt": {"key": other}, "max_tokens": good})
        assert r.status_code == 422
        r = requests.post(f"{url}/api/generate?model={other}", headers=auth, timeout=TIMEOUT,
                          data={"text": "Hi"})  # a key where the model id goes, and in the path
        assert r.status_code == 404
        assert requests.get(f"{url}/v1/{good}", headers=auth, timeout=TIMEOUT).status_code == 404
    finally:
        assert stop_background(tiny_store.home)
    log = (state_path(tiny_store.home).parent / "server.log").read_text()
    assert '"GET /v1/models HTTP/1.1" 200' in log  # the access log was on: the test can see lines
    assert "api_key=[redacted]" in log
    for key in (good, other, revoked, wrong):
        assert key not in log and key[3:] not in log and key[3:20] not in log


def test_the_formatter_redacts_whole_lines_tracebacks_included():
    formatter = RedactingFormatter(logging.Formatter("%(levelname)s %(message)s"))
    key = "wb-" + "a1B2_c3-" * 5
    try:
        raise ValueError(f"bad {key}")
    except ValueError:
        import sys

        record = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "asked %s?token=%s",
                                   (f"/x?api_key={key}", "t0ps3cret"), sys.exc_info())
    line = formatter.format(record)
    assert key not in line and key[3:] not in line and "t0ps3cret" not in line
    assert "ValueError" in line and "[redacted]" in line
    assert redact("Authorization: Bearer sk-live-123") == "Authorization: Bearer [redacted]"
    assert redact("GET /v1/models?model=a&monkey=b") == "GET /v1/models?model=a&monkey=b"
