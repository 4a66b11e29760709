"""The registry: one lock per model, a served-id listing cached until the store changes, bad
custom cards skipped, and batchers keyed by what is installed (a reinstall is picked up)."""
from __future__ import annotations

import logging
import shutil
import threading

import pytest
import requests

from workbench.serve import registry as registry_module
from workbench.serve.registry import ModelRegistry
from workbench.serve.sampling import SamplingParams

WAIT = 60  # bound on every wait; the tests assert on events, never on durations


def greedy(batcher, text: str, n: int = 12) -> str:
    ids = batcher.model.tokenizer(text)["input_ids"]
    _, done = batcher.run(ids, SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True))
    return done.text


def test_a_slow_load_of_one_model_does_not_block_another(tiny_store, monkeypatch):
    real_load = registry_module.load_model
    a_loading, release_a = threading.Event(), threading.Event()

    def load(model_id, **kw):
        if model_id == "tiny-gpt2":
            a_loading.set()
            assert release_a.wait(WAIT)
        return real_load(model_id, **kw)

    monkeypatch.setattr(registry_module, "load_model", load)
    reg = ModelRegistry(tiny_store)
    got: dict[str, object] = {}
    a = threading.Thread(target=lambda: got.setdefault("a", reg.get("tiny-gpt2")))
    b_done = threading.Event()

    def get_b():
        got["b"] = reg.get("tiny-llama")
        b_done.set()

    try:
        a.start()
        assert a_loading.wait(WAIT)
        threading.Thread(target=get_b, daemon=True).start()
        assert b_done.wait(WAIT), "tiny-llama waited for tiny-gpt2's load"
        assert greedy(got["b"], "Hello")
        assert "a" not in got  # A is still loading
    finally:
        release_a.set()
        a.join(WAIT)
        reg.close()
    assert got["a"].model_id == "tiny-gpt2"


def test_two_requests_for_one_model_load_it_once(tiny_store, monkeypatch):
    real_load, loads = registry_module.load_model, []
    monkeypatch.setattr(registry_module, "load_model", lambda m, **kw: loads.append(m) or real_load(m, **kw))
    reg = ModelRegistry(tiny_store)
    try:
        threads = [threading.Thread(target=reg.get, args=("tiny-gpt2",)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
        assert loads == ["tiny-gpt2"]
    finally:
        reg.close()


def test_the_listing_is_cached_until_the_store_changes(tiny_store, tiny_model_dirs, monkeypatch):
    reloads = []
    real_reload = tiny_store.catalog.reload
    monkeypatch.setattr(tiny_store.catalog, "reload", lambda: reloads.append(1) or real_reload())
    monkeypatch.setattr(tiny_store, "list", lambda: (_ for _ in ()).throw(AssertionError("store.list() per request")))
    reg = ModelRegistry(tiny_store)
    first = reg.ids()
    assert {"tiny-gpt2", "tiny-llama"} <= set(first)
    for _ in range(50):
        assert reg.ids() == first
    assert len(reloads) == 1  # read once, not per request
    tiny_store.add("tiny-extra", local_dir=tiny_model_dirs["gpt2"], name="Tiny extra")
    assert "tiny-extra" in reg.ids()  # an install is seen
    tiny_store.remove("tiny-extra")
    assert "tiny-extra" not in reg.ids()  # and a removal
    card = tiny_store.cards_dir / "tiny-gpt2.toml"  # a card edited in place
    card.write_text(card.read_text().replace('capabilities = ["generate", ', 'capabilities = ['))
    assert "tiny-gpt2" not in reg.ids()


def test_a_malformed_custom_card_is_reported_once_and_skipped(start_server, api_key, tiny_store, caplog):
    server = start_server()  # every installed model: the listing reads the cards
    headers = {"Authorization": f"Bearer {api_key}"}

    def served():
        r = requests.get(f"{server.url}/v1/models", headers=headers, timeout=WAIT)
        assert r.status_code == 200, r.text
        return [m["id"] for m in r.json()["data"]]

    before = served()
    assert "tiny-gpt2" in before
    with caplog.at_level(logging.WARNING):
        (tiny_store.cards_dir / "broken.toml").write_text("id = 'broken'\nname = [unclosed\n")
        for _ in range(5):
            assert served() == before
        r = requests.post(f"{server.url}/api/generate?model=tiny-gpt2", headers=headers, timeout=WAIT,
                          data={"text": "Hi", "max_new_tokens": "2"})
        assert r.status_code == 200, r.text
    reported = [rec.getMessage() for rec in caplog.records if "broken.toml" in rec.getMessage()]
    assert len(reported) == 1, reported
    assert "Fix or delete the file" in reported[0]


def test_a_reinstall_with_other_weights_is_served_on_the_next_request(start_server, api_key, tiny_store,
                                                                        tiny_model_dirs, tmp_path):
    folder = tmp_path / "swap"
    shutil.copytree(tiny_model_dirs["gpt2"], folder)
    tiny_store.add("tiny-swap", local_dir=folder, name="Tiny swap")
    server = start_server(["tiny-swap", "tiny-llama"])

    def ask(model):
        r = requests.post(f"{server.url}/v1/completions", headers={"Authorization": f"Bearer {api_key}"},
                          timeout=WAIT, json={"model": model, "prompt": "Hello there", "max_tokens": 12,
                                              "temperature": 0, "ignore_eos": True})
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["text"]

    before, llama = ask("tiny-swap"), ask("tiny-llama")
    assert before != llama
    old_batcher = server.registry.batchers["tiny-swap"]
    shutil.rmtree(folder)
    shutil.copytree(tiny_model_dirs["llama"], folder)
    tiny_store.install("tiny-swap", force=True)  # `workbench store install tiny-swap --force`
    assert ask("tiny-swap") == llama  # the new weights, not the cached old ones
    assert server.registry.batchers["tiny-swap"] is not old_batcher
    assert ask("tiny-swap") == llama
    tiny_store.forget("tiny-swap")  # remove + add again under the same id, the old weights back
    shutil.rmtree(folder)
    shutil.copytree(tiny_model_dirs["gpt2"], folder)
    tiny_store.add("tiny-swap", local_dir=folder, name="Tiny swap")
    assert ask("tiny-swap") == before


def test_a_replaced_build_finishes_its_requests_then_closes(tiny_store, tiny_model_dirs, tmp_path):
    import queue

    from workbench.serve.batching import DoneEvent, ErrorEvent

    folder = tmp_path / "swap"
    shutil.copytree(tiny_model_dirs["gpt2"], folder)
    tiny_store.add("tiny-swap", local_dir=folder, name="Tiny swap")
    reg = ModelRegistry(tiny_store)
    try:
        old = reg.get("tiny-swap")
        events: queue.Queue = queue.Queue()
        with old.model.lock:  # the old build cannot step: its request stays in flight
            old.submit(old.model.tokenizer("Hello")["input_ids"],
                       SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True), events.put)
            shutil.rmtree(folder)
            shutil.copytree(tiny_model_dirs["llama"], folder)
            tiny_store.install("tiny-swap", force=True)
            new = reg.get("tiny-swap")
            assert new is not old and new.model is not old.model
            assert greedy(new, "Hello")  # the new build serves while the old one is held
        while not isinstance(ev := events.get(timeout=WAIT), (DoneEvent, ErrorEvent)):
            pass
        assert isinstance(ev, DoneEvent) and ev.finish_reason == "length"  # finished, not cut off
        old._thread.join(WAIT)
        assert not old._thread.is_alive()  # then closed
        assert reg.get("tiny-swap") is new
    finally:
        reg.close()


def test_a_dead_batcher_is_rebuilt_by_the_next_request(tiny_store):
    reg = ModelRegistry(tiny_store)
    try:
        first = reg.get("tiny-llama")
        expected = greedy(first, "Hello")
        first._die("a test killed it")  # what repeated engine failures end in
        assert first.dead
        second = reg.get("tiny-llama")
        assert second is not first and not second.dead
        assert greedy(second, "Hello") == expected
    finally:
        reg.close()


def test_requests_past_the_load_waiters_cap_are_told_to_retry(tiny_store, monkeypatch):
    from workbench.serve.errors import QueueFullError

    real_load = registry_module.load_model
    loading, release = threading.Event(), threading.Event()

    def slow_load(model_id, **kw):
        loading.set()
        assert release.wait(WAIT)
        return real_load(model_id, **kw)

    monkeypatch.setattr(registry_module, "load_model", slow_load)
    reg = ModelRegistry(tiny_store)
    reg.max_load_waiters = 2  # the first request loads; one more may wait on it
    threads = [threading.Thread(target=reg.get, args=("tiny-llama",), daemon=True) for _ in range(2)]
    try:
        threads[0].start()
        assert loading.wait(WAIT)
        threads[1].start()
        for _ in range(WAIT * 100):  # until the second one waits on the load
            if reg._load_waiters == 2:
                break
            threading.Event().wait(0.01)
        assert reg._load_waiters == 2
        with pytest.raises(QueueFullError, match="still loading") as err:
            reg.get("tiny-llama")  # would hold a third worker thread: told to retry instead
        assert err.value.retry_after > 0
    finally:
        release.set()
        for t in threads:
            t.join(WAIT)
        reg.close()
    assert reg._load_waiters == 0
