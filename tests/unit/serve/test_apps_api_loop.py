"""An app's retrieval and prompt assembly run off the event loop: while one app request is held
inside retrieval, an open stream keeps receiving chunks. Retrieval is held until the stream has
received chunks made after it began, so the test shows order, not speed."""
from __future__ import annotations

import json
import threading

import requests

from workbench.apps.card import parse_app_card
from workbench.apps.catalog import save_app

WAIT_S = 30  # the bound on each wait; the order, not the time, is what the test checks


def test_retrieval_for_an_app_does_not_stall_an_open_stream(start_server, api_key, tiny_store, long_model_dir,
                                                           monkeypatch, tmp_path):
    from workbench.apps.app import App

    tiny_store.add("tiny-long", local_dir=long_model_dir, name="Tiny long")
    knowledge = tmp_path / "club.md"
    knowledge.write_text("# Club\n\n## Fees\nStudents pay 90 crowns.\n")
    save_app(tiny_store, parse_app_card({"id": "club", "base_model": "tiny-long",
                                         "generation": {"max_new_tokens": 2}}), [knowledge])
    server = start_server(["tiny-long"])
    batcher = server.registry.get("tiny-long")
    headers = {"Authorization": f"Bearer {api_key}"}
    count, target = [0], [None]
    started, entered, release, stop = threading.Event(), threading.Event(), threading.Event(), threading.Event()
    released = []
    retrieve = App.retrieve

    def held_retrieve(self, text, k=None):
        target[0] = len(batcher.active[0].ids) + 3  # a chunk numbered past this was made while held
        entered.set()
        released.append(release.wait(WAIT_S))
        return retrieve(self, text, k)

    monkeypatch.setattr(App, "retrieve", held_retrieve)

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
                        release.set()

    reader = threading.Thread(target=read_stream, daemon=True)
    reader.start()
    try:
        assert started.wait(WAIT_S)
        r = requests.post(f"{server.url}/v1/completions", headers=headers, timeout=WAIT_S * 2,
                          json={"model": "club", "prompt": "How much do students pay?"})
        assert entered.is_set() and released == [True], "the stream stalled while the app's passages were retrieved"
        assert r.status_code == 200 and r.json()["citations"][0]["heading"] == "Club > Fees"
    finally:
        release.set()
        stop.set()
        reader.join(WAIT_S)
