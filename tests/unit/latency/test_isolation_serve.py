"""The server with a native backend whose process segfaults at its first evaluation for one
model: that model's requests get a clear error naming the signal, the server keeps running and
serves the other model on the same backend."""
import pytest
import requests

from workbench.runtime.backends import isolated
from workbench.runtime.backends.isolated import IsolatedBackend
from workbench.serve.keys import KeyStore
from workbench.serve.server import ServerThread, build_app

TIMEOUT = 60
OPENER = "test_isolation:FakeNative"  # the fake native backend, opened by the child


def build(model, name, progress, device, threads, store):
    crash = "segv" if model.card.id == "tiny-llama" else None
    return IsolatedBackend(name, OPENER, {"vocab": model.config.vocab_size, "crash": crash})


@pytest.fixture
def server(tiny_store):
    isolated.register_native("fake-native", build)
    app, registry = build_app(tiny_store, ["tiny-gpt2", "tiny-llama"], backend="fake-native", max_batch=2)
    running = ServerThread(app, host="127.0.0.1").start()
    running.key = KeyStore(tiny_store.home).create("test")
    running.registry = registry
    yield running
    running.stop()
    registry.close()
    isolated.unregister_native("fake-native")


def complete(server, model):
    return requests.post(f"{server.url}/v1/completions", timeout=TIMEOUT,
                         headers={"Authorization": f"Bearer {server.key}"},
                         json={"model": model, "prompt": "Once upon a time", "max_tokens": 4, "temperature": 0})


def test_a_crashing_native_backend_fails_its_requests_and_the_server_goes_on(server):
    for _ in range(2):  # the second request finds the dead batcher and starts a new process: same answer
        r = complete(server, "tiny-llama")
        assert r.status_code in (500, 503), r.text
        message = r.json()["error"]["message"]
        assert "fake-native" in message and "SIGSEGV" in message, message
    ok = complete(server, "tiny-gpt2")
    assert ok.status_code == 200, ok.text
    assert ok.json()["usage"]["completion_tokens"] == 4
    assert server.registry.batchers["tiny-llama"].dead  # the one that crashed, not the server
    assert not server.registry.batchers["tiny-gpt2"].dead
    health = requests.get(f"{server.url}/v1/models", timeout=TIMEOUT, headers={"Authorization": f"Bearer {server.key}"})
    assert health.status_code == 200
