"""The continuous batcher on the tiny models: batched greedy equals solo, seeded sampling
repeats, sequences join and leave between steps, stop strings, queue bound, cancellation."""
from __future__ import annotations

import queue
import threading

import pytest

from workbench.runtime.sampling import argmax
from workbench.serve.batching import Batcher, DoneEvent, TokenEvent
from workbench.serve.engine import TorchBatchEngine
from workbench.serve.errors import QueueFullError
from workbench.serve.sampling import SamplingParams

PROMPTS = [
    "The capital of France is",
    "Once upon a time there was",
    "Attention is all you need. The quick brown fox",
    "日本語",
    "Emoji 🙂 and <b>tags</b>",
]


def _model(tiny_store, name):
    from workbench.runtime.loading import load_model

    return load_model(name, store=tiny_store, device="cpu")


def _solo(model, ids, params):
    b = Batcher(model, TorchBatchEngine(model), max_batch=1)
    try:
        return b.run(ids, params)
    finally:
        b.close()


def _together(model, prompts_ids, params_list, max_batch=8):
    """Submit all at once (rows join one by one and leave at different steps)."""
    b = Batcher(model, TorchBatchEngine(model), max_batch=max_batch)
    queues = []
    with model.lock:  # nothing runs until every request is queued
        for ids, p in zip(prompts_ids, params_list):
            q = queue.Queue()
            b.submit(ids, p, q.put)
            queues.append(q)
    out = []
    for q in queues:
        tokens = []
        while not isinstance(ev := q.get(timeout=60), DoneEvent):
            tokens.append(ev)
        out.append((tokens, ev))
    b.close()
    return out


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama", "tiny-gemma3"])
def test_greedy_in_a_batch_equals_each_request_alone(tiny_store, name):
    model = _model(tiny_store, name)
    ids = [model.tokenizer(p)["input_ids"] for p in PROMPTS]
    params = [SamplingParams(max_tokens=n, ignore_eos=True) for n in (20, 7, 30, 12, 25)]
    solo = [[t.token_id for t in _solo(model, i, p)[0]] for i, p in zip(ids, params)]
    batched = _together(model, ids, params)
    assert [[t.token_id for t in toks] for toks, _ in batched] == solo
    assert [done.completion_tokens for _, done in batched] == [20, 7, 30, 12, 25]


def test_solo_greedy_matches_the_workbench_generation_loop(tiny_store):
    model = _model(tiny_store, "tiny-llama")
    expected = model.generate(PROMPTS[0], max_new_tokens=20, stop_at_eos=False)
    tokens, done = _solo(model, model.tokenizer(PROMPTS[0])["input_ids"], SamplingParams(max_tokens=20, ignore_eos=True))
    assert [t.token_id for t in tokens] == expected.token_ids
    assert done.text == expected.text


def test_the_engine_keeps_each_rows_logits_while_rows_join_and_leave(tiny_store):
    import torch

    model = _model(tiny_store, "tiny-llama")
    ids = [model.tokenizer(p)["input_ids"] for p in PROMPTS[:3]]

    def alone(i, steps):
        e = TorchBatchEngine(model)
        logits, out = e.add(ids[i]), []
        for _ in range(steps):
            out.append(logits)
            logits = e.step([argmax(logits)])[0]
        return out

    ref = [alone(i, 8) for i in range(3)]
    e = TorchBatchEngine(model)
    last = [e.add(ids[0])]
    seen = {0: [], 1: [], 2: []}
    rows = [0]
    for step in range(8):
        if step == 2:  # a longer prompt joins: the batch is padded on the left
            rows.append(2)
            last.append(e.add(ids[2]))
        if step == 3:
            rows.append(1)
            last.append(e.add(ids[1]))
        for r, lg in zip(rows, last):
            seen[r].append(lg)
        if step == 5:  # row 0 leaves; padding columns no row uses are cut
            e.remove([0])
            rows, last = rows[1:], last[1:]
        last = list(e.step([argmax(lg) for lg in last]))
    for r in range(3):
        for got, want in zip(seen[r], ref[r]):
            assert torch.allclose(got, want, atol=1e-4), (r, float((got - want).abs().max()))
    assert e.mask[:, 0].any()  # no all-padding column is left


def test_seeded_sampling_repeats_at_the_same_concurrency(tiny_store):
    model = _model(tiny_store, "tiny-gpt2")
    ids = [model.tokenizer(p)["input_ids"] for p in PROMPTS[:3]]
    params = [SamplingParams(max_tokens=15, temperature=0.9, top_p=0.9, seed=s, ignore_eos=True) for s in (1, 2, 3)]
    first = [[t.token_id for t in toks] for toks, _ in _together(model, ids, params)]
    second = [[t.token_id for t in toks] for toks, _ in _together(model, ids, params)]
    assert first == second
    other_seed = SamplingParams(max_tokens=15, temperature=0.9, top_p=0.9, seed=99, ignore_eos=True)
    assert [t.token_id for t in _solo(model, ids[0], other_seed)[0]] != first[0]


def test_a_stop_string_ends_the_text_before_it(tiny_store):
    model = _model(tiny_store, "tiny-gpt2")
    ids = model.tokenizer(PROMPTS[0])["input_ids"]
    full = _solo(model, ids, SamplingParams(max_tokens=30, ignore_eos=True))[1].text
    stop = full[5:8]
    tokens, done = _solo(model, ids, SamplingParams(max_tokens=30, stop=(stop,), ignore_eos=True))
    assert done.finish_reason == "stop"
    assert done.text == full[: full.index(stop)]
    assert "".join(t.text for t in tokens) == done.text  # nothing of the stop string was streamed


def test_a_full_queue_is_refused_and_cancelled_jobs_leave(tiny_store):
    model = _model(tiny_store, "tiny-gpt2")
    b = Batcher(model, TorchBatchEngine(model), max_batch=1, max_waiting=1)
    ids = model.tokenizer(PROMPTS[0])["input_ids"]
    events = queue.Queue()
    try:
        with model.lock:
            first = b.submit(ids, SamplingParams(max_tokens=100, ignore_eos=True), events.put)
            deadline = threading.Event()
            while not b.joining:  # the batcher took it and waits for the lock
                deadline.wait(0.01)
            b.submit(ids, SamplingParams(max_tokens=5), lambda ev: None)  # waits in the queue
            with pytest.raises(QueueFullError) as err:
                b.submit(ids, SamplingParams(max_tokens=5), lambda ev: None)
            assert err.value.retry_after >= 1 and "busy" in str(err.value)
            first.cancel()
        got = []
        while not isinstance(ev := events.get(timeout=30), DoneEvent):
            got.append(ev)
        assert ev.finish_reason == "cancelled" and len(got) < 100
    finally:
        b.close()
    assert all(isinstance(t, TokenEvent) for t in got)
