"""The HTTP API with ``requests``, as the origin's snippet calls it, against a real uvicorn on a
free loopback port serving the tiny models."""
from __future__ import annotations

import concurrent.futures as cf

import requests

TIMEOUT = 60


def _post(server, path, key=None, **kw):
    headers = {"Authorization": f"Bearer {key or server.key}"}
    return requests.post(f"{server.url}{path}", headers=headers, timeout=TIMEOUT, **kw)


def test_the_origin_snippet_works_and_greedy_repeats(server, tiny_store):
    BASE, api_key, model_name, text = server.url, server.key, "tiny-gpt2", "The capital of France is"
    answer = requests.post(f"{BASE}/api/generate?model={model_name}",
                           headers={"Authorization": f"Bearer {api_key}"},
                           data={"text": text}).json()["generated_text"]
    again = _post(server, "/api/generate?model=tiny-gpt2", data={"text": text}).json()
    assert again["generated_text"] == answer and answer
    assert again["usage"]["completion_tokens"] <= 64
    assert again["usage"]["total_tokens"] == again["usage"]["prompt_tokens"] + again["usage"]["completion_tokens"]
    assert set(again["timing"]) == {"queue_ms", "ttft_ms", "total_ms", "tokens_per_s"}
    from workbench.runtime.loading import load_model

    expected = load_model("tiny-gpt2", store=tiny_store, device="cpu").generate(text, max_new_tokens=64)
    assert answer == expected.text


def test_generate_takes_json_and_parameters(server):
    r = _post(server, "/api/generate", json={"model": "tiny-llama", "text": "Hello", "max_new_tokens": 5,
                                             "temperature": 0.8, "seed": 3})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] <= 5
    again = _post(server, "/api/generate", json={"model": "tiny-llama", "text": "Hello", "max_new_tokens": 5,
                                                 "temperature": 0.8, "seed": 3})
    assert again.json()["generated_text"] == r.json()["generated_text"]
    chat = _post(server, "/api/generate?model=tiny-llama", data={"text": "Hi", "chat": "true", "max_new_tokens": "4"})
    assert chat.status_code == 200, chat.text


def test_every_endpoint_but_health_needs_a_valid_key(server, tiny_store):
    from workbench.serve.keys import KeyStore

    assert requests.get(f"{server.url}/health", timeout=TIMEOUT).json() == {"status": "ok"}
    for method, path in (("get", "/v1/models"), ("get", "/metrics"), ("post", "/v1/completions"),
                         ("post", "/v1/chat/completions"), ("post", "/api/generate?model=tiny-gpt2"),
                         ("get", "/nowhere")):
        for headers in ({}, {"Authorization": "Bearer wb-wrong"}, {"Authorization": server.key}):
            r = getattr(requests, method)(f"{server.url}{path}", headers=headers, timeout=TIMEOUT)
            assert r.status_code == 401, (path, headers, r.status_code)
            assert r.json()["error"]["code"] == "invalid_api_key"
            assert "keys create" in r.json()["error"]["message"]
    assert requests.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {server.key}"},
                        timeout=TIMEOUT).status_code == 200
    KeyStore(tiny_store.home).revoke("test")
    r = requests.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {server.key}"}, timeout=TIMEOUT)
    assert r.status_code == 401


def test_concurrent_greedy_requests_equal_their_solo_runs(server):
    prompts = ["The capital of France is", "Once upon a time", "The quick brown fox", "Attention is", "Emoji"]

    def ask(p):
        r = _post(server, "/v1/completions", json={"model": "tiny-llama", "prompt": p, "max_tokens": 24,
                                                   "temperature": 0, "ignore_eos": True})
        return r.json()["choices"][0]["text"]

    solo = [ask(p) for p in prompts]
    with cf.ThreadPoolExecutor(len(prompts)) as pool:
        together = list(pool.map(ask, prompts))
    assert together == solo


def test_metrics_are_prometheus_text(server):
    _post(server, "/api/generate?model=tiny-gpt2", data={"text": "Hello", "max_new_tokens": "3"})
    r = requests.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {server.key}"}, timeout=TIMEOUT)
    text = r.text
    for name in ("workbench_requests_total", "workbench_generated_tokens_total", "workbench_queue_depth",
                 "workbench_time_to_first_token_seconds_bucket", "workbench_time_per_output_token_seconds_count",
                 "workbench_active_sequences"):
        assert name in text
    from prometheus_client.parser import text_string_to_metric_families

    requests_total = {tuple(sorted(s.labels.items())): s.value
                      for f in text_string_to_metric_families(text) for s in f.samples
                      if s.name == "workbench_requests_total"}
    assert requests_total[(("method", "POST"), ("route", "/api/generate"), ("status", "200"))] == 1
    assert r.headers["content-type"].startswith("text/plain; version=")


def test_cors_is_off_unless_origins_are_given(start_server, api_key):
    plain = start_server(["tiny-gpt2"])
    pre = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    r = requests.options(f"{plain.url}/v1/completions", headers=pre, timeout=TIMEOUT)
    assert "access-control-allow-origin" not in r.headers
    opened = start_server(["tiny-gpt2"], cors_origins=("http://app.example",))
    ok = requests.options(f"{opened.url}/v1/completions",
                          headers={**pre, "Origin": "http://app.example"}, timeout=TIMEOUT)
    assert ok.headers.get("access-control-allow-origin") == "http://app.example"
    bad = requests.options(f"{opened.url}/v1/completions", headers=pre, timeout=TIMEOUT)
    assert bad.headers.get("access-control-allow-origin") != "http://evil.example"


def test_only_loopback_is_quiet():
    from workbench.serve.server import exposure_warning

    assert exposure_warning("127.0.0.1") is None and exposure_warning("localhost") is None
    assert "WARNING" in exposure_warning("0.0.0.0")
