"""The batcher's thread boundary: any exception inside the loop fails the requests in the engine
with a clear error and the next request is served; a batcher that cannot recover (its engine
cannot be reset, errors on every pass, its thread gone) answers 503 at once, and a stuck one
refuses new requests while it is stuck. No wait here can hang: every one is bounded."""
from __future__ import annotations

import queue
import threading

import pytest

from workbench.serve.batching import Batcher, DoneEvent, ErrorEvent
from workbench.serve.engine import TorchBatchEngine
from workbench.serve.errors import GenerationFailedError, ModelUnavailableError
from workbench.serve.sampling import SamplingParams

WAIT_S = 30  # a bound on every wait, far above what any of them takes
PARAMS = SamplingParams(max_tokens=6, ignore_eos=True)


def _ort_fail():
    capi = pytest.importorskip("onnxruntime.capi.onnxruntime_pybind11_state")
    return capi.Fail("[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running MatMul node.")


class Faulty:
    """A real engine that raises ``error`` in ``at`` ("step" or "advance"): the next ``times``
    calls (None: every call). ``reset_error``, if given, is raised by ``reset``."""

    def __init__(self, engine, error, at="step", times=1, reset_error=None):
        self.engine, self.error, self.at, self.times, self.reset_error = engine, error, at, times, reset_error

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def _maybe_raise(self, where):
        if where == self.at and self.error is not None and (self.times is None or self.times > 0):
            if self.times is not None:
                self.times -= 1
            raise self.error

    def step(self, tokens):
        self._maybe_raise("step")
        return self.engine.step(tokens)

    def advance(self, pre, columns=None):
        self._maybe_raise("advance")
        return self.engine.advance(pre, columns)

    def reset(self):
        if self.reset_error is not None:
            raise self.reset_error
        self.engine.reset()


@pytest.fixture
def model(tiny_store):
    from workbench.runtime.loading import load_model

    return load_model("tiny-gpt2", store=tiny_store, device="cpu")


def _ids(model, text="The capital of France is"):
    return model.tokenizer(text)["input_ids"]


def _outcome(batcher, ids, params=PARAMS):
    """Submit one request and wait (bounded) for its end: ``(tokens, DoneEvent | ErrorEvent)``."""
    events = queue.Queue()
    batcher.submit(ids, params, events.put)
    tokens = []
    while True:
        ev = events.get(timeout=WAIT_S)
        if isinstance(ev, (DoneEvent, ErrorEvent)):
            return tokens, ev
        tokens.append(ev.token_id)


def _reference(model, ids):
    b = Batcher(model, TorchBatchEngine(model))
    try:
        return [t.token_id for t in b.run(ids, PARAMS)[0]]
    finally:
        b.close()


ERRORS = {
    "RuntimeError": lambda: RuntimeError("boom"),
    "TypeError": lambda: TypeError("unsupported operand type(s)"),
    "KeyError": lambda: KeyError("past_key_values"),
    "IndexError": lambda: IndexError("index 3 is out of bounds"),
    "ZeroDivisionError": lambda: ZeroDivisionError("division by zero"),
    "onnxruntime Fail": _ort_fail,
}


@pytest.mark.parametrize("at", ["step", "advance"])
@pytest.mark.parametrize("kind", list(ERRORS))
def test_any_error_fails_that_request_and_the_next_one_is_served(model, kind, at):
    error = ERRORS[kind]()
    ids = _ids(model)
    want = _reference(model, ids)
    b = Batcher(model, Faulty(TorchBatchEngine(model), error, at=at))
    try:
        _, failed = _outcome(b, ids)
        assert isinstance(failed, ErrorEvent) and isinstance(failed.error, GenerationFailedError)
        assert type(error).__name__ in str(failed.error) and "Retry" in str(failed.error)
        tokens, done = _outcome(b, ids)  # the engine was reset: the next request is whole and right
        assert isinstance(done, DoneEvent) and done.finish_reason == "length"
        assert tokens == want
        assert b.health() is None and b.alive
    finally:
        b.close()


def test_errors_on_every_pass_mark_it_dead_and_later_requests_get_503_at_once(model):
    b = Batcher(model, Faulty(TorchBatchEngine(model), TypeError("bad shapes"), times=None), max_failures=2)
    try:
        for _ in range(2):
            assert isinstance(_outcome(b, _ids(model))[1].error, GenerationFailedError)
        with pytest.raises(ModelUnavailableError) as err:
            b.submit(_ids(model), PARAMS, lambda ev: None)
        assert err.value.status == 503 and b.dead
        assert "2 decode passes failed in a row" in str(err.value) and "TypeError: bad shapes" in str(err.value)
        assert "Send the request again" in str(err.value)
        with pytest.raises(ModelUnavailableError):
            b.run(_ids(model), PARAMS)
    finally:
        b.close()


def test_a_success_between_failures_keeps_it_alive(model):
    engine = Faulty(TorchBatchEngine(model), RuntimeError("flaky"), times=1)
    b = Batcher(model, engine, max_failures=2)
    try:
        for _ in range(3):  # fail, serve, fail, serve, ...: never two in a row
            engine.times = 1
            assert isinstance(_outcome(b, _ids(model))[1], ErrorEvent)
            assert isinstance(_outcome(b, _ids(model))[1], DoneEvent)
        assert b.alive
    finally:
        b.close()


def test_an_engine_that_cannot_be_reset_kills_it_and_the_waiting_requests_get_503(model):
    engine = Faulty(TorchBatchEngine(model), RuntimeError("cache corrupted"),
                    reset_error=RuntimeError("cannot free buffers"))
    b = Batcher(model, engine, max_batch=1)
    first, second = queue.Queue(), queue.Queue()
    try:
        with model.lock:  # the first request is taken and blocked; the second waits in the queue
            b.submit(_ids(model), PARAMS, first.put)
            for _ in range(WAIT_S * 100):
                if b.joining:
                    break
                threading.Event().wait(0.01)
            b.submit(_ids(model), PARAMS, second.put)
        assert isinstance(_last(first).error, GenerationFailedError)
        dead = _last(second).error
        assert isinstance(dead, ModelUnavailableError) and "could not be reset" in str(dead)
        assert "cannot free buffers" in str(dead)
        with pytest.raises(ModelUnavailableError):
            b.submit(_ids(model), PARAMS, lambda ev: None)
    finally:
        b.close()


class Crash(BaseException):
    """Not an Exception: nothing in the loop catches it, so it ends the batcher's thread."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_thread_that_ends_answers_its_requests_and_later_ones_with_503(model):
    b = Batcher(model, Faulty(TorchBatchEngine(model), Crash("gone")))
    try:
        _, ev = _outcome(b, _ids(model))
        assert isinstance(ev.error, ModelUnavailableError) and "thread stopped on Crash: gone" in str(ev.error)
        b._thread.join(WAIT_S)
        assert not b.alive
        with pytest.raises(ModelUnavailableError):
            b.submit(_ids(model), PARAMS, lambda ev: None)
    finally:
        b.close()


def _raises(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except ModelUnavailableError as err:
        return err
    return None


class Hanging:
    """A real engine whose ``step`` blocks until ``release`` is set (an engine call that hangs)."""

    def __init__(self, engine):
        self.engine, self.release, self.entered = engine, threading.Event(), threading.Event()

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def step(self, tokens):
        self.entered.set()
        assert self.release.wait(WAIT_S)
        return self.engine.step(tokens)


def test_a_stuck_batcher_answers_503_while_stuck_and_serves_once_it_returns(model):
    engine = Hanging(TorchBatchEngine(model))
    b = Batcher(model, engine, stall_s=300.0)  # not stuck while the prefill runs, however slow the machine
    try:
        outcome = {}
        waiter = threading.Thread(target=lambda: outcome.setdefault("err", _raises(b.run, _ids(model), PARAMS, poll_s=0.05)))
        waiter.start()
        assert engine.entered.wait(WAIT_S)  # the pass is inside the hanging step now
        b.stall_s = 0.05
        waiter.join(WAIT_S)
        assert isinstance(outcome.get("err"), ModelUnavailableError) and "is stuck" in str(outcome["err"])  # no hang
        with pytest.raises(ModelUnavailableError, match="is stuck"):
            b.submit(_ids(model), PARAMS, lambda ev: None)
        assert not b.alive and not b.dead
        b.stall_s = 300.0
        engine.release.set()
        assert isinstance(_outcome(b, _ids(model))[1], DoneEvent)
    finally:
        engine.release.set()
        b.close()


def _last(events: queue.Queue):
    while True:
        ev = events.get(timeout=WAIT_S)
        if isinstance(ev, (DoneEvent, ErrorEvent)):
            return ev


def test_over_http_the_failed_request_gets_500_and_those_waiting_on_a_dead_batcher_503(start_server, api_key):
    import json

    import requests

    server = start_server(["tiny-gpt2"], max_batch=1)
    batcher = server.registry.get("tiny-gpt2")
    batcher.engine = Faulty(batcher.engine, RuntimeError("cache corrupted"),
                            reset_error=RuntimeError("cannot free buffers"))
    url, headers = f"{server.url}/v1/completions", {"Authorization": f"Bearer {api_key}"}
    body = {"model": "tiny-gpt2", "prompt": "Once upon a time", "max_tokens": 4, "temperature": 0}
    got = {}

    def post(name, stream=False):
        with requests.post(url, json={**body, "stream": stream}, headers=headers, timeout=WAIT_S, stream=stream) as r:
            got[name] = (r.status_code, [json.loads(x[6:]) for x in r.iter_lines() if x.startswith(b"data: {")]
                         if stream else r.json())

    def wait_for(condition):
        for _ in range(WAIT_S * 100):
            if condition():
                return
            threading.Event().wait(0.01)
        raise AssertionError("the batcher did not take the requests")

    threads = [threading.Thread(target=post, args=("failed",))]
    with batcher.model.lock:  # the first request is taken and blocked; the other two wait behind it
        threads[0].start()
        wait_for(lambda: batcher.joining)
        threads += [threading.Thread(target=post, args=("waiting",)),
                    threading.Thread(target=post, args=("streaming", True))]
        for t in threads[1:]:
            t.start()
        wait_for(lambda: batcher.queue_depth == 2)
    for t in threads:
        t.join(WAIT_S)
    status, answer = got["failed"]
    assert status == 500 and answer["error"]["code"] == "generation_failed"
    assert "RuntimeError: cache corrupted" in answer["error"]["message"]
    status, answer = got["waiting"]
    assert status == 503 and answer["error"]["code"] == "model_unavailable"
    assert "could not be reset" in answer["error"]["message"] and "Send the request again" in answer["error"]["message"]
    status, events = got["streaming"]
    assert status == 200 and events[-1]["error"]["code"] == "model_unavailable"
