"""The continuous batcher on the tiny models: batched greedy equals solo, seeded sampling
repeats, sequences join and leave between steps, stop strings, queue bound, cancellation."""
from __future__ import annotations

import queue
import threading

import pytest

from workbench.runtime.sampling import argmax
from workbench.serve.batching import Batcher, DoneEvent, TokenEvent
from workbench.serve.engine import OrtBatchEngine, TorchBatchEngine, make_engine
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


def _engines(tiny_store, model, kind):
    """A factory of fresh engines of ``kind``: "torch", or "onnxruntime-fused" on a seeded export."""
    if kind == "torch":
        return lambda: TorchBatchEngine(model)
    from workbench.testing.exports import seed_export

    seed_export(tiny_store, model.card.id, "fused")
    return lambda: make_engine(model, kind, store=tiny_store)


ENGINES = ["torch", "onnxruntime-fused"]


def _solo(model, ids, params, engine=None):
    b = Batcher(model, (engine or TorchBatchEngine)(model), max_batch=1)
    try:
        return b.run(ids, params)
    finally:
        b.close()


def _together(model, prompts_ids, params_list, max_batch=8, prefill_chunk=64, engine=None):
    """Submit all at once (read as one group, rows leave at different steps)."""
    b = Batcher(model, (engine or TorchBatchEngine)(model), max_batch=max_batch, prefill_chunk=prefill_chunk)
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


def test_greedy_equals_solo_while_a_long_prompt_is_read_in_chunks_between_steps(tiny_store):
    model = _model(tiny_store, "tiny-llama")
    long = model.tokenizer(" ".join(PROMPTS * 4))["input_ids"]
    short = model.tokenizer(PROMPTS[0])["input_ids"]
    params = SamplingParams(max_tokens=12, ignore_eos=True)
    solo = [[t.token_id for t in _solo(model, i, params)[0]] for i in (short, long)]
    b = Batcher(model, TorchBatchEngine(model), prefill_chunk=4)
    order: list[str] = []
    try:
        events = {name: queue.Queue() for name in ("short", "long")}

        def on(name):
            return lambda ev: (order.append(name), events[name].put(ev))

        with model.lock:  # the short one is read first, then the long one joins in chunks
            b.submit(short, params, on("short"))
            while not b.joining:
                threading.Event().wait(0.01)
        while not order:
            threading.Event().wait(0.01)
        b.submit(long, params, on("long"))
        got = {}
        for name, q in events.items():
            toks = []
            while not isinstance(ev := q.get(timeout=60), DoneEvent):
                toks.append(ev.token_id)
            got[name] = toks
        calls = list(b.timings)
    finally:
        b.close()
    assert [got["short"], got["long"]] == solo
    assert sum(c.kind == "prefill" for c in calls) >= len(long) // 4 + 1  # one call per chunk
    assert any(c.kind == "decode" for c in calls) and all(c.seconds > 0 and c.rows == 1 for c in calls)
    assert len(long) > 4 * 12 and order.index("long") >= 8  # the short one kept decoding meanwhile


def test_solo_greedy_matches_the_workbench_generation_loop(tiny_store):
    model = _model(tiny_store, "tiny-llama")
    expected = model.generate(PROMPTS[0], max_new_tokens=20, stop_at_eos=False)
    tokens, done = _solo(model, model.tokenizer(PROMPTS[0])["input_ids"], SamplingParams(max_tokens=20, ignore_eos=True))
    assert [t.token_id for t in tokens] == expected.token_ids
    assert done.text == expected.text


@pytest.mark.parametrize("kind", ENGINES)
def test_the_engine_keeps_each_rows_logits_while_rows_join_and_leave(tiny_store, kind):
    import torch

    model = _model(tiny_store, "tiny-llama")
    new_engine = _engines(tiny_store, model, kind)
    ids = [model.tokenizer(p)["input_ids"] for p in PROMPTS[:3]]

    def alone(i, steps):
        e = new_engine()
        logits, out = e.add(ids[i]), []
        for _ in range(steps):
            out.append(logits)
            logits = e.step([argmax(logits)])[0]
        return out

    ref = [alone(i, 8) for i in range(3)]
    e = new_engine()
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


@pytest.mark.parametrize("kind", ENGINES)
@pytest.mark.parametrize("columns", [None, 3])
def test_a_group_read_together_gives_each_row_its_solo_logits(tiny_store, columns, kind):
    import torch

    model = _model(tiny_store, "tiny-llama")
    new_engine = _engines(tiny_store, model, kind)
    ids = [model.tokenizer(p)["input_ids"] for p in PROMPTS]
    solo = [new_engine().add(i) for i in ids]
    e = new_engine()
    first = e.add(ids[0])  # a row already decoding when the group joins
    pre = e.start(ids[1:])
    while (logits := e.advance(pre, columns)) is None:
        e.step([argmax(first)])  # the batch keeps stepping between chunks
    assert logits.shape[0] == len(ids) - 1 and e.rows == len(ids)
    for got, want in zip(logits, solo[1:]):
        assert torch.allclose(got, want, atol=1e-4), float((got - want).abs().max())


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


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma3"])
def test_onnxruntime_variants_decode_together_and_equal_each_request_alone(tiny_store, name):
    model = _model(tiny_store, name)
    new_engine = _engines(tiny_store, model, "onnxruntime-fused")
    assert isinstance(new_engine(), OrtBatchEngine)
    ids = [model.tokenizer(p)["input_ids"] for p in PROMPTS]
    params = [SamplingParams(max_tokens=n, ignore_eos=True) for n in (20, 7, 30, 12, 25)]
    solo = [[t.token_id for t in _solo(model, i, p, lambda m: new_engine())[0]] for i, p in zip(ids, params)]
    batched = _together(model, ids, params, prefill_chunk=3, engine=lambda m: new_engine())
    assert [[t.token_id for t in toks] for toks, _ in batched] == solo
    torch_solo = [[t.token_id for t in _solo(model, i, p)[0]] for i, p in zip(ids, params)]
    assert solo == torch_solo  # and the same tokens as torch
