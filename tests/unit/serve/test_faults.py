"""Bad input and faults: each a clear JSON error with the right status, and the server keeps
serving. A full queue answers 429 with Retry-After; a client that disconnects mid-stream stops
its generation; a model removed from the store while served gets a clear 404."""
from __future__ import annotations

import threading
import time

import pytest
import requests

TIMEOUT = 60


def _post(server, path, **kw):
    return requests.post(f"{server.url}{path}", headers={"Authorization": f"Bearer {server.key}"},
                         timeout=TIMEOUT, **kw)


def _metrics(server) -> str:
    return requests.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {server.key}"}, timeout=TIMEOUT).text


@pytest.mark.parametrize("path, kw, status, words", [
    ("/api/generate?model=nope", {"data": {"text": "hi"}}, 404, "tiny-gpt2, tiny-llama"),
    ("/api/generate?model=tiny-gpt2", {"data": {"text": "   "}}, 400, "empty"),
    ("/api/generate?model=tiny-gpt2", {"data": {}}, 400, "'text'"),
    ("/api/generate?model=tiny-gpt2", {"data": {"text": "hi", "max_new_tokens": "many"}}, 400, "max_new_tokens"),
    ("/api/generate", {"data": {"text": "hi"}}, 400, "?model=ID"),
    ("/api/generate?model=tiny-gpt2", {"data": "{not json", "headers_json": True}, 400, "not valid JSON"),
    ("/api/generate?model=tiny-gpt2", {"data": {"text": "word " * 400}}, 400, "reads at most 128"),
    ("/v1/completions", {"data": "{not json", "headers_json": True}, 400, "not valid JSON"),
    ("/v1/completions", {"json": {"model": "tiny-gpt2", "prompt": 5}}, 422, "prompt"),
    ("/v1/completions", {"json": {"model": "tiny-gpt2", "prompt": "x", "max_tokens": "lots"}}, 422, "max_tokens"),
    ("/v1/completions", {"json": {"model": "tiny-gpt2", "prompt": "x", "max_tokens": 0}}, 400, "at least 1"),
    ("/v1/completions", {"json": {"model": "tiny-gpt2", "prompt": "x", "max_tokens": -5}}, 400, "at least 1"),
    ("/v1/completions", {"json": {"model": "tiny-gpt2", "prompt": "x", "max_tokens": 10**9}}, 400, "at most 4,096"),
    ("/v1/completions", {"json": {"model": "tiny-gpt2", "prompt": "x", "max_tokens": 500}}, 400, "max_tokens to at most"),
    ("/v1/completions", {"json": {"model": "tiny-gpt2", "prompt": "x", "temperature": 5}}, 400, "temperature"),
    ("/v1/completions", {"json": {"model": "tiny-gpt2", "prompt": "x", "logprobs": 50}}, 400, "logprobs"),
    ("/v1/chat/completions", {"json": {"model": "tiny-llama", "messages": []}}, 400, "empty"),
    ("/v1/chat/completions", {"json": {"model": "tiny-llama", "messages": [{"role": "robot", "content": "x"}]}}, 422, "role"),
    ("/v1/chat/completions", {"json": {"model": "tiny-llama", "messages": "hi"}}, 422, "messages"),
])
def test_bad_input_gets_a_clear_json_error(server, path, kw, status, words):
    if kw.pop("headers_json", False):
        r = requests.post(f"{server.url}{path}", data=kw["data"], timeout=TIMEOUT,
                          headers={"Authorization": f"Bearer {server.key}", "Content-Type": "application/json"})
    else:
        r = _post(server, path, **kw)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]["message"], r.json()
    assert _post(server, "/api/generate?model=tiny-gpt2", data={"text": "still here", "max_new_tokens": "2"}).ok


def test_a_10_mb_body_gets_413(server):
    r = _post(server, "/api/generate?model=tiny-gpt2", data={"text": "x" * 10_000_000})
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]


def test_a_full_queue_answers_429_with_retry_after(start_server, api_key, tiny_store):
    from workbench.runtime.loading import load_model

    server = start_server(["tiny-gpt2"], max_batch=1, max_waiting=0)
    server.key = api_key
    model = load_model("tiny-gpt2", store=tiny_store, device="cpu")
    batcher = server.registry.get("tiny-gpt2")
    results = []
    with model.lock:  # the batcher cannot run a step: the first request holds the only slot
        t = threading.Thread(target=lambda: results.append(
            _post(server, "/api/generate?model=tiny-gpt2", data={"text": "first"})))
        t.start()
        deadline = time.monotonic() + 20
        while batcher.active_count == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        r = _post(server, "/api/generate?model=tiny-gpt2", data={"text": "second"})
        assert r.status_code == 429, r.text
        assert int(r.headers["Retry-After"]) >= 1
        assert r.json()["error"]["type"] == "rate_limit_error"
    t.join(TIMEOUT)
    assert results[0].status_code == 200
    assert _post(server, "/api/generate?model=tiny-gpt2", data={"text": "third"}).status_code == 200


def test_a_client_that_disconnects_mid_stream_stops_its_generation(start_server, api_key, tiny_store, long_model_dir):
    tiny_store.add("tiny-long", local_dir=long_model_dir, name="Tiny long")
    server = start_server(["tiny-long"])
    server.key = api_key
    body = {"model": "tiny-long", "prompt": "Once upon a time", "max_tokens": 4000, "temperature": 0,
            "ignore_eos": True, "stream": True}
    with _post(server, "/v1/completions", json=body, stream=True) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        got = [next(lines) for _ in range(10)]
        assert all(line.startswith(b"data: ") or not line for line in got)
    batcher = server.registry.get("tiny-long")
    deadline = time.monotonic() + 20
    while batcher.active_count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert batcher.active_count == 0
    from prometheus_client.parser import text_string_to_metric_families

    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for f in text_string_to_metric_families(_metrics(server)) for s in f.samples}
    assert values[("workbench_generations_total", (("model", "tiny-long"), ("reason", "cancelled")))] == 1
    assert values[("workbench_generated_tokens_total", (("model", "tiny-long"),))] < 4000


def test_a_model_removed_while_served_gets_a_clear_error(server, tiny_store):
    assert _post(server, "/api/generate?model=tiny-gpt2", data={"text": "hi", "max_new_tokens": "2"}).ok
    tiny_store.remove("tiny-gpt2")
    r = _post(server, "/api/generate?model=tiny-gpt2", data={"text": "hi"})
    assert r.status_code == 404
    assert "removed from the store" in r.json()["error"]["message"]
    assert "workbench store install tiny-gpt2" in r.json()["error"]["message"]
    assert _post(server, "/api/generate?model=tiny-llama", data={"text": "hi", "max_new_tokens": "2"}).ok
    assert requests.get(f"{server.url}/health", timeout=TIMEOUT).ok


def test_a_chunked_body_over_the_limit_gets_413(server):
    def chunks():
        for _ in range(200):
            yield b"x" * 10_000

    r = requests.post(f"{server.url}/v1/completions", data=chunks(), timeout=TIMEOUT,
                      headers={"Authorization": f"Bearer {server.key}", "Content-Type": "application/json"})
    assert r.status_code == 413
    small = requests.post(f"{server.url}/v1/completions", timeout=TIMEOUT,
                          data=iter([b'{"model": "tiny-gpt2", ', b'"prompt": "Hi", "max_tokens": 2}']),
                          headers={"Authorization": f"Bearer {server.key}", "Content-Type": "application/json"})
    assert small.status_code == 200, small.text
