"""The server on the real default model: the origin's snippet knows Paris, the openai client
chats, and four concurrent greedy requests get what each gets alone."""
from __future__ import annotations

import concurrent.futures as cf

import pytest
import requests

pytestmark = pytest.mark.slow


@pytest.fixture
def real_server(real_store):
    from workbench.serve.keys import KeyStore
    from workbench.serve.server import ServerThread, build_app

    keys = KeyStore(real_store.home)
    keys.revoke("slow-test")
    key = keys.create("slow-test")
    app, registry = build_app(real_store, ["smollm2-135m-instruct"])
    server = ServerThread(app).start()
    server.key = key
    yield server
    server.stop()
    registry.close()
    keys.revoke("slow-test")


def test_the_capital_of_france_is_paris(real_server):
    answer = requests.post(f"{real_server.url}/api/generate?model=smollm2-135m-instruct",
                           headers={"Authorization": f"Bearer {real_server.key}"},
                           data={"text": "The capital of France is"}, timeout=120).json()["generated_text"]
    assert "Paris" in answer


def test_openai_chat_and_batched_greedy_equal_solo(real_server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{real_server.url}/v1", api_key=real_server.key, max_retries=0, timeout=120)
    r = client.chat.completions.create(model="smollm2-135m-instruct", max_tokens=24, temperature=0,
                                       messages=[{"role": "user", "content": "What is the capital of France?"}])
    assert "Paris" in r.choices[0].message.content
    prompts = ["The capital of France is", "Once upon a time", "def fibonacci(n):", "The three primary colors are"]

    def ask(p):
        return client.completions.create(model="smollm2-135m-instruct", prompt=p, max_tokens=24,
                                         temperature=0).choices[0].text

    solo = [ask(p) for p in prompts]
    with cf.ThreadPoolExecutor(4) as pool:
        assert list(pool.map(ask, prompts)) == solo
