"""Native backends in a child process: a crash is that backend's failure, with its signal.

The native backend here is a fake (``FakeNative``) opened by the child from this module: tiny
deterministic logits, and a crash of the kind asked for at its first evaluation. The module
imports no torch at its top, so the children that import it start quickly."""
import os
import signal
import time

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.runtime.backends import isolated
from workbench.runtime.backends.isolated import (
    BackendCrashedError,
    IsolatedBackend,
    signal_name,
)

VOCAB = 32
OPENER = f"{__name__}:FakeNative"


class FakeNative:
    """Logits ``(vocab,)``: 1.0 at ``(sum of the sequence's ids) % vocab``; the state is the ids.
    ``crash``: None, "segv", "abort", "exit", "hang" or "raise", done at the first prefill (after
    ``after`` prefills that work; or at ``open`` with ``crash_at="open"``)."""

    device, variant = "cpu", "gguf"

    def __init__(self, vocab: int = VOCAB, crash: str | None = None, crash_at: str = "prefill", after: int = 0):
        self.vocab, self.crash, self.crash_at, self.after = vocab, crash, crash_at, after  # after: prefills first
        if crash_at == "open":
            self._crash()

    def _crash(self):
        if self.crash == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        elif self.crash == "abort":
            os.abort()
        elif self.crash == "exit":
            os._exit(3)
        elif self.crash == "hang":
            time.sleep(120)
        elif self.crash == "raise":
            raise WorkbenchError("the fake refused: give it a shorter prompt.")

    def settings(self):
        return {"backend": "fake-native", "device": "cpu", "threads": 1}

    def weight_bytes_per_token(self):
        return 1234

    def _logits(self, ids):
        out = np.zeros(self.vocab, dtype=np.float32)
        out[sum(ids) % self.vocab] = 1.0
        return out

    def prefill(self, input_ids):
        if self.crash_at == "prefill":
            if self.after == 0:
                self._crash()
            self.after -= 1
        ids = tuple(int(t) for t in input_ids[0].tolist())
        return self._logits(ids), ids

    def step(self, token_id, state):
        ids = state + (int(token_id),)
        return self._logits(ids), ids


def expected(ids):
    return int(sum(ids) % VOCAB)


@pytest.fixture
def spawn():
    made = []

    def _spawn(**kwargs):
        options = {k: kwargs.pop(k) for k in ("timeout_s", "hint") if k in kwargs}
        backend = IsolatedBackend("fake-native", OPENER, kwargs, **options)
        made.append(backend)
        return backend

    yield _spawn
    for backend in made:
        backend.close()


def test_a_healthy_child_runs_the_backend_protocol(spawn):
    import torch

    backend = spawn()
    assert backend.proc.pid != os.getpid() and backend.proc.poll() is None
    logits, state = backend.prefill(np.array([[3, 4, 5]]))
    assert isinstance(logits, torch.Tensor) and logits.dtype == torch.float32 and logits.shape == (VOCAB,)
    assert int(logits.argmax()) == expected([3, 4, 5])
    logits2, _ = backend.step(7, state)
    assert int(logits2.argmax()) == expected([3, 4, 5, 7])
    again, _ = backend.step(1, state)  # an earlier state is still held by the child
    assert int(again.argmax()) == expected([3, 4, 5, 1])
    assert backend.settings()["isolation"] == "child process" and backend.settings()["pid"] == backend.proc.pid
    assert backend.weight_bytes_per_token() == 1234 and backend.variant == "gguf"
    backend.close()
    assert backend.proc.poll() is not None  # the child is gone


@pytest.mark.parametrize("crash, sig, code", [("segv", "SIGSEGV", -signal.SIGSEGV), ("abort", "SIGABRT", -signal.SIGABRT),
                                              ("exit", None, 3)])
def test_a_crash_at_the_first_evaluation_is_that_backends_error(spawn, crash, sig, code):
    backend = spawn(crash=crash, hint="Try the other build.")
    with pytest.raises(BackendCrashedError) as caught:
        backend.prefill(np.array([[1, 2]]))
    err = caught.value
    assert (err.signal, err.returncode, err.phase) == (sig, code, "first prefill")
    assert isinstance(err, WorkbenchError) and "fake-native" in str(err) and "Try the other build." in str(err)
    assert (sig or "status 3") in str(err)
    assert backend.dead and err.to_json()["signal"] == sig
    with pytest.raises(BackendCrashedError) as again:  # later calls: the same error, at once
        backend.step(1, None)
    assert again.value is err


def test_a_crash_while_opening_is_reported_from_the_constructor():
    with pytest.raises(BackendCrashedError) as caught:
        IsolatedBackend("fake-native", OPENER, {"crash": "segv", "crash_at": "open"})
    assert caught.value.signal == "SIGSEGV" and caught.value.phase == "open"


def test_an_exception_in_the_child_is_raised_here_and_the_child_goes_on(spawn):
    backend = spawn(crash="raise")
    with pytest.raises(WorkbenchError, match="give it a shorter prompt") as caught:
        backend.prefill(np.array([[1]]))
    assert not isinstance(caught.value, BackendCrashedError) and not backend.dead
    assert backend.proc.poll() is None


def test_a_child_that_does_not_answer_is_stopped(spawn):
    backend = spawn(crash="hang", timeout_s=1)
    with pytest.raises(BackendCrashedError, match="did not answer within 1 s") as caught:
        backend.prefill(np.array([[1]]))
    assert caught.value.signal == "SIGKILL" and backend.proc.poll() is not None


def test_signal_names():
    assert signal_name(-11) == "SIGSEGV" and signal_name(-6) == "SIGABRT"
    assert signal_name(0) is None and signal_name(3) is None and signal_name(None) is None


def test_native_backends_register_by_name(tiny_store):
    from workbench.runtime.loading import load_model

    def build(model, name, progress, device, threads, store):
        return IsolatedBackend(name, OPENER, {"vocab": model.config.vocab_size})

    isolated.register_native("fake-native", build, applies=lambda card: card.id == "tiny-llama")
    try:
        assert "fake-native" in isolated.native_backends() and isolated.is_native("fake-native")
        assert "fake-native" in isolated.native_backends(tiny_store.card("tiny-llama"))
        assert "fake-native" not in isolated.native_backends(tiny_store.card("tiny-gpt2"))
        model = load_model("tiny-llama", store=tiny_store, device="cpu")
        backend = isolated.make_any_backend(model, "fake-native", store=tiny_store)
        try:
            assert backend.prefill(np.array([[1]]))[0].shape == (model.config.vocab_size,)
        finally:
            backend.close()
        assert isolated.make_any_backend(model, "torch").name == "torch"  # others: the backend registry
    finally:
        isolated.unregister_native("fake-native")
    assert "llamacpp" in isolated.native_backends()  # registered by the module itself
