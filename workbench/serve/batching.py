"""The continuous batcher: one thread per served model decodes every active request together.

Contract:
- ``submit(prompt_ids, params, on_event)`` queues a request and returns its ``Job`` at once; it
  raises ``QueueFullError`` (429) when ``max_waiting`` requests already wait.
- Between decode steps waiting jobs join and finished or cancelled ones leave. The jobs waiting
  when no prefill is under way form one group (up to ``max_batch`` rows in all), read together in
  one forward pass per loop, ``prefill_chunk`` prompt positions at a time, each chunk followed by
  a decode step of the rows already active; once read, the group's rows join the batch. Each
  decode step is one ``engine.step`` for all rows. Engine calls run under ``model.lock`` (code
  that mutates the module holds it too).
- ``on_event`` is called from the batcher thread with a ``TokenEvent`` per generated token, then
  exactly one ``DoneEvent`` or ``ErrorEvent``. It must be quick and must not raise.
- ``job.cancel()`` (a client that went away) takes the job out before the next step.
- ``timings`` keeps the last engine calls (``EngineCall``: prefill chunk or decode step, rows,
  seconds), for benchmarks and the API page; clear it to start a new window.
- Text: the new tokens are decoded together (special tokens skipped); a token whose text is an
  incomplete UTF-8 character, or could be the start of a stop string, is held back until known.
  A stop string ends the text before it (finish ``"stop"``), as does end-of-sequence; the token
  budget ends it with ``"length"``.

The batcher knows nothing about HTTP.
"""
from __future__ import annotations

import collections
import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..errors import WorkbenchError
from .errors import GenerationFailedError, QueueFullError, ServerClosedError
from .sampling import SamplingParams, TokenLogprob, choose, token_logprobs


@dataclass(frozen=True)
class TokenEvent:
    text: str  # new visible text (may be "" while held back)
    token_id: int
    token: str  # this token alone, decoded
    logprob: TokenLogprob | None


@dataclass(frozen=True)
class DoneEvent:
    text: str
    finish_reason: str  # "stop" | "length" | "cancelled"
    prompt_tokens: int
    completion_tokens: int
    queue_ms: float  # submit -> prefill start
    ttft_ms: float  # submit -> first token
    total_ms: float  # submit -> done

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / (self.total_ms / 1000) if self.total_ms > 0 else 0.0


@dataclass(frozen=True)
class EngineCall:
    kind: str  # "prefill" (one chunk of a joining group) | "decode" (one step of every active row)
    rows: int
    seconds: float  # wall time of the engine call, lock held


@dataclass(frozen=True)
class ErrorEvent:
    error: WorkbenchError


Event = TokenEvent | DoneEvent | ErrorEvent


@dataclass(eq=False)
class Job:
    prompt_ids: list[int]
    params: SamplingParams
    on_event: Callable[[Event], None]
    submitted: float = field(default_factory=time.perf_counter)
    cancelled: bool = False
    ids: list[int] = field(default_factory=list)
    emitted: str = ""
    started: float | None = None
    first: float | None = None
    last: float | None = None
    generator: torch.Generator | None = None

    def cancel(self) -> None:
        self.cancelled = True


class Batcher:
    """Continuous batching over one model's ``engine`` (see the module docstring)."""

    def __init__(self, model, engine, max_batch: int = 8, max_waiting: int = 32, metrics=None,
                 prefill_chunk: int = 64):
        if max_batch < 1 or max_waiting < 0 or prefill_chunk < 1:
            raise WorkbenchError("max_batch and prefill_chunk must be at least 1, max_waiting at least 0.")
        self.model, self.engine = model, engine
        self.model_id = model.card.id
        self.tokenizer = model.tokenizer
        self.eos = set(model.eos_token_ids)
        self.max_batch, self.max_waiting = max_batch, max_waiting
        self.metrics = metrics
        self.waiting: collections.deque[Job] = collections.deque()
        self.active: list[Job] = []
        self.joining: list[Job] = []  # taken from the queue, being prefilled together
        self.prefill_chunk = prefill_chunk
        self._prefill = None  # the engine's handle on the group being read
        self._cv = threading.Condition()
        self._closed = False
        self._close_error: WorkbenchError | None = None
        self._recent_s: collections.deque[float] = collections.deque(maxlen=32)
        self.timings: collections.deque[EngineCall] = collections.deque(maxlen=4096)
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{self.model_id}", daemon=True)
        self._thread.start()

    # --- public ------------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return len(self.waiting)

    @property
    def active_count(self) -> int:
        return len(self.active) + len(self.joining)

    def submit(self, prompt_ids: list[int], params: SamplingParams, on_event: Callable[[Event], None]) -> Job:
        job = Job(list(prompt_ids), params, on_event)
        with self._cv:
            if self._closed:
                raise ServerClosedError("The server is shutting down; send the request again once it is back.")
            busy = len(self.active) + len(self.joining) + len(self.waiting)
            if len(self.waiting) >= self.max_waiting and busy >= self.max_batch:
                raise QueueFullError(
                    f"{self.model_id} is busy: {len(self.active)} requests are decoding and "
                    f"{len(self.waiting)} wait (the limit). Retry after the Retry-After seconds, or "
                    "start the server with a larger --max-waiting.",
                    retry_after=self.retry_after(),
                )
            self.waiting.append(job)
            self._cv.notify()
        return job

    def run(self, prompt_ids: list[int], params: SamplingParams) -> tuple[list[TokenEvent], DoneEvent]:
        """Submit and wait (for scripts and tests): the token events and the done event."""
        events: queue.Queue = queue.Queue()
        self.submit(prompt_ids, params, events.put)
        tokens = []
        while True:
            ev = events.get()
            if isinstance(ev, TokenEvent):
                tokens.append(ev)
            elif isinstance(ev, ErrorEvent):
                raise ev.error
            else:
                return tokens, ev

    def retry_after(self) -> int:
        """Seconds a refused client should wait: about one recent request's duration."""
        mean = sum(self._recent_s) / len(self._recent_s) if self._recent_s else 1.0
        return max(1, round(mean))

    def close(self, timeout: float = 10.0, error: WorkbenchError | None = None) -> None:
        """Stop the thread; requests still in it end with ``error`` (default: shutting down)."""
        with self._cv:
            self._closed = True
            self._close_error = error
            self._cv.notify_all()
        self._thread.join(timeout)

    # --- the loop ------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._closed and not self.waiting and not self.active and not self.joining:
                    self._cv.wait(0.5)
                if self._closed:
                    break
                if not self.joining:  # a new group: everything waiting that fits
                    while self.waiting and len(self.active) + len(self.joining) < self.max_batch:
                        self.joining.append(self.waiting.popleft())
            try:
                self._admit()
                self._drop([j for j in self.active if j.cancelled], "cancelled")
                if self.active:
                    self._step()
            except WorkbenchError as err:  # a bad request must not stop the others' server
                self._fail_all(err)
            except (RuntimeError, ValueError, IndexError) as err:
                self._fail_all(GenerationFailedError(
                    f"Generation failed inside {self.model_id} ({type(err).__name__}); the request "
                    "was dropped and the server keeps serving. Retry; if it repeats, reinstall the "
                    "model or report it with the prompt."
                ))
        for job in self.active + self.joining + list(self.waiting):
            job.on_event(ErrorEvent(
                self._close_error or ServerClosedError("The server shut down before this request finished.")
            ))
        self.active, self.waiting = [], collections.deque()

    def _admit(self) -> None:
        """Read the next chunk of the joining group; once read, its jobs join and take a token."""
        if self._prefill is None:
            for job in [j for j in self.joining if j.cancelled]:
                self.joining.remove(job)
                self._finish(job, "cancelled")
            if not self.joining:
                return
            for job in self.joining:
                job.started = time.perf_counter()
                seed = job.params.seed if job.params.seed is not None else secrets.randbits(63)
                job.generator = torch.Generator(device="cpu").manual_seed(seed)
            self._prefill = self.engine.start([job.prompt_ids for job in self.joining])
        with self.model.lock:
            t0 = time.perf_counter()
            logits = self.engine.advance(self._prefill, self.prefill_chunk)  # (N, V) once read
            self.timings.append(EngineCall("prefill", len(self.joining), time.perf_counter() - t0))
        if logits is None:
            return
        with self._cv:
            group, self.joining, self._prefill = self.joining, [], None
            self.active.extend(group)
        self._drop([job for job, row in zip(group, logits) if self._take(job, row)], None)

    def _step(self) -> None:
        tokens = [job.ids[-1] for job in self.active]
        with self.model.lock:
            t0 = time.perf_counter()
            logits = self.engine.step(tokens)  # (B, V)
            self.timings.append(EngineCall("decode", len(tokens), time.perf_counter() - t0))
        done = [job for job, row in zip(list(self.active), logits) if self._take(job, row)]
        self._drop(done, None)

    def _drop(self, jobs: list[Job], reason: str | None) -> None:
        if not jobs:
            return
        rows = [self.active.index(j) for j in jobs]
        self.engine.remove(rows)
        self.active = [j for j in self.active if j not in jobs]
        if reason:
            for job in jobs:
                self._finish(job, reason)

    def _fail_all(self, err: WorkbenchError) -> None:
        for job in self.active + self.joining:
            job.on_event(ErrorEvent(err))
        self.active, self.joining, self._prefill = [], [], None
        self.engine.reset()

    def _take(self, job: Job, logits: torch.Tensor) -> bool:
        """Choose ``job``'s next token from ``logits`` (V,), report it; True when the job ended."""
        p = job.params
        if job.cancelled:
            self._finish(job, "cancelled")
            return True
        token_id = choose(logits, p, job.generator)
        now = time.perf_counter()
        if self.metrics:
            if job.first is None:
                self.metrics.observe_ttft(self.model_id, now - job.submitted)
            else:
                self.metrics.observe_token(self.model_id, now - job.last)
        job.first = job.first or now
        job.last = now
        if token_id in self.eos and not p.ignore_eos:
            self._finish(job, "stop")
            return True
        job.ids.append(token_id)
        text = self.tokenizer.decode(job.ids, skip_special_tokens=True)
        cut = _stop_at(text, p.stop)
        visible = text[:cut] if cut is not None else text[: len(text) - _held_back(text, p.stop)]
        piece = ""
        if not visible.endswith("\ufffd") and visible.startswith(job.emitted) and len(visible) > len(job.emitted):
            piece, job.emitted = visible[len(job.emitted):], visible
        lp = token_logprobs(logits, token_id, p.logprobs) if p.logprobs is not None else None
        job.on_event(TokenEvent(piece, token_id, self.tokenizer.decode([token_id]), lp))
        if cut is not None:
            self._finish(job, "stop", text[:cut])
            return True
        if len(job.ids) >= p.max_tokens:
            self._finish(job, "length", text)
            return True
        return False

    def _finish(self, job: Job, reason: str, text: str | None = None) -> None:
        if text is None:
            text = self.tokenizer.decode(job.ids, skip_special_tokens=True) if job.ids else ""
        end = time.perf_counter()
        self._recent_s.append(end - job.submitted)
        if self.metrics:
            self.metrics.finished(self.model_id, reason, len(job.prompt_ids), len(job.ids))
        ms = lambda t: ((t or end) - job.submitted) * 1000
        job.on_event(DoneEvent(
            text=text, finish_reason=reason, prompt_tokens=len(job.prompt_ids),
            completion_tokens=len(job.ids), queue_ms=ms(job.started), ttft_ms=ms(job.first),
            total_ms=ms(end),
        ))


def _stop_at(text: str, stops: tuple[str, ...]) -> int | None:
    """Index where the earliest stop string starts in ``text``, or None."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """How many trailing characters of ``text`` could be the start of a stop string."""
    held = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), held, -1):
            if text.endswith(s[:k]):
                held = k
                break
    return held
