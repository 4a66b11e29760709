"""Prompt preparation runs off the event loop: while a long prompt is being tokenized (or
templated), an open stream keeps receiving chunks. The tokenizer is held inside that call until
the stream has received chunks made after the call began, so the test shows order, not speed."""
from __future__ import annotations

import json
import threading

import pytest
import requests

WAIT_S = 30  # the bound on each wait; the order, not the time, is what the test checks
LONG = "word " * 30_000  # 150,000 characters


class Gate:
    """A tokenizer that, for a long text, waits inside the call until ``release`` is set."""

    chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"

    def __init__(self, tokenizer, on_enter):
        self.tokenizer, self.on_enter = tokenizer, on_enter
        self.entered, self.release, self.released = threading.Event(), threading.Event(), None

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)

    def _hold(self, text: str) -> None:
        if len(text) > 100_000 and not self.entered.is_set():
            self.on_enter()
            self.entered.set()
            self.released = self.release.wait(WAIT_S)

    def __call__(self, text, **kw):
        self._hold(text)
        return self.tokenizer(text, **kw)

    def apply_chat_template(self, messages, **kw):
        text = "".join(m["content"] for m in messages)
        self._hold(text)
        return text


@pytest.mark.parametrize("route", ["completions", "chat", "generate"])
def test_a_long_prompt_being_prepared_does_not_stall_an_open_stream(start_server, api_key, tiny_store,
                                                                    long_model_dir, monkeypatch, route):
    tiny_store.add("tiny-long", local_dir=long_model_dir, name="Tiny long")
    server = start_server(["tiny-long"])
    batcher = server.registry.get("tiny-long")
    headers = {"Authorization": f"Bearer {api_key}"}
    count, target = [0], [None]
    started, stop = threading.Event(), threading.Event()

    def on_enter():  # a chunk numbered past this must have been made while the prompt is held
        target[0] = len(batcher.active[0].ids) + 3

    gate = Gate(batcher.model.tokenizer, on_enter)
    monkeypatch.setattr(batcher.model, "tokenizer", gate)

    def read_stream():
        body = {"model": "tiny-long", "prompt": "Once upon a time", "max_tokens": 4000, "temperature": 0,
                "ignore_eos": True, "stream": True, "logprobs": 0}  # logprobs: one chunk per token
        with requests.post(f"{server.url}/v1/completions", json=body, headers=headers, stream=True,
                           timeout=WAIT_S) as r:
            for line in r.iter_lines():
                if stop.is_set():
                    return
                if line.startswith(b"data: {") and json.loads(line[6:]).get("choices"):
                    count[0] += 1
                    started.set()
                    if target[0] is not None and count[0] >= target[0]:
                        gate.release.set()

    reader = threading.Thread(target=read_stream, daemon=True)
    reader.start()
    try:
        assert started.wait(WAIT_S)
        if route == "completions":
            r = requests.post(f"{server.url}/v1/completions", headers=headers, timeout=WAIT_S * 2,
                              json={"model": "tiny-long", "prompt": LONG, "max_tokens": 2})
        elif route == "chat":
            r = requests.post(f"{server.url}/v1/chat/completions", headers=headers, timeout=WAIT_S * 2,
                              json={"model": "tiny-long", "messages": [{"role": "user", "content": LONG}],
                                    "max_tokens": 2})
        else:
            r = requests.post(f"{server.url}/api/generate?model=tiny-long", headers=headers, timeout=WAIT_S * 2,
                              data={"text": LONG, "max_new_tokens": "2"})
        assert gate.entered.is_set()
        assert gate.released, "the stream received no chunk while the long prompt was being prepared"
        assert r.status_code == 400 and "Shorten the prompt" in r.json()["error"]["message"]  # 150k > 4,096 tokens
    finally:
        gate.release.set()
        stop.set()
        reader.join(WAIT_S)
