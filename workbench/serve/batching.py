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
- Faults: any exception inside the loop (the engine's, ONNX Runtime's, the tokenizer's) ends the
  requests in the engine with an ``ErrorEvent`` (``GenerationFailedError`` unless it was a
  ``WorkbenchError``), resets the engine and goes on with the queue. The batcher is dead when the
  reset fails, when ``max_failures`` loop passes fail in a row (no decode step or finished request
  between them), or when its thread ends other than by ``close``: it ends every request it holds
  with ``ModelUnavailableError`` (503, the reason in its message) and ``submit`` refuses new ones
  with it. While one pass (a prefill chunk and a decode step, the wait for ``model.lock``
  included) runs longer than ``stall_s``, ``health()`` answers that error too, and ``submit``
  refuses. Waiters (``run``, the asyncio bridge) call ``health()`` while they wait, so no wait
  outlives a dead or stuck batcher.
- ``job.cancel()`` (a client that went away) takes the job out before the next step.
- ``timings`` keeps the last engine calls (``EngineCall``: prefill chunk or decode step, rows,
  seconds), for benchmarks and the API page; clear it to start a new window.
- Text: the new tokens are decoded together (special tokens skipped): the text is exactly
  ``decode(ids)`` while each decode extends the previous one; once one does not (a tokenizer whose
  decode is not prefix-stable), later tokens are decoded after a few tokens of context and
  appended, so text once sent never changes. A token whose text is an incomplete UTF-8 character,
  or could be the start of a stop string, is held back until known. A stop string ends the text
  before it (finish ``"stop"``), as does end-of-sequence; the token budget ends it with
  ``"length"``. The ``TokenEvent`` texts and the ``DoneEvent``'s ``tail`` (what was still held
  back) concatenate to exactly the ``DoneEvent``'s ``text``.

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
from .errors import (
    GenerationFailedError,
    ModelUnavailableError,
    QueueFullError,
    ServerClosedError,
)
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
    tail: str = ""  # the end of ``text`` no TokenEvent carried (held back): a stream sends it last

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
    text: str = ""  # the text of ids[:read] (before any stop string is cut)
    read: int = 0  # how many of ids ``text`` covers
    stable: bool = True  # decode(ids) has extended ``text`` so far
    sent: int = 0  # characters of ``text`` sent in TokenEvents
    ended: bool = False  # its DoneEvent or ErrorEvent was sent
    started: float | None = None
    first: float | None = None
    last: float | None = None
    generator: torch.Generator | None = None

    def cancel(self) -> None:
        self.cancelled = True


class Batcher:
    """Continuous batching over one model's ``engine`` (see the module docstring)."""

    def __init__(self, model, engine, max_batch: int = 8, max_waiting: int = 32, metrics=None,
                 prefill_chunk: int = 64, max_failures: int = 3, stall_s: float = 300.0):
        if max_batch < 1 or max_waiting < 0 or prefill_chunk < 1 or max_failures < 1 or stall_s <= 0:
            raise WorkbenchError("max_batch, prefill_chunk and max_failures must be at least 1, max_waiting "
                                 "at least 0 and stall_s above 0.")
        self.model, self.engine = model, engine
        self.model_id = model.card.id
        self.tokenizer = model.tokenizer
        self.eos = set(model.eos_token_ids)
        self.max_batch, self.max_waiting = max_batch, max_waiting
        self.max_failures, self.stall_s = max_failures, stall_s
        self.metrics = metrics
        self.waiting: collections.deque[Job] = collections.deque()
        self.active: list[Job] = []
        self.joining: list[Job] = []  # taken from the queue, being prefilled together
        self.prefill_chunk = prefill_chunk
        self._prefill = None  # the engine's handle on the group being read
        self._cv = threading.Condition()
        self._closed = False
        self._close_error: WorkbenchError | None = None
        self._dead: str | None = None  # why the batcher cannot serve, once it cannot
        self._failures = 0  # loop passes failed in a row
        self._pass_since: float | None = None  # time.monotonic() when the running loop pass began
        self._recent_s: collections.deque[float] = collections.deque(maxlen=32)
        self.timings: collections.deque[EngineCall] = collections.deque(maxlen=4096)
        self._thread = threading.Thread(target=self._run, name=f"batcher-{self.model_id}", daemon=True)
        self._thread.start()

    # --- public ------------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return len(self.waiting)

    @property
    def active_count(self) -> int:
        return len(self.active) + len(self.joining)

    @property
    def alive(self) -> bool:
        """Serving now: neither dead nor stuck."""
        return self.health() is None

    @property
    def dead(self) -> bool:
        """Unable to serve for good (a stuck batcher is not dead: it serves again once unstuck)."""
        self.health()
        return self._dead is not None

    def health(self) -> ModelUnavailableError | None:
        """None while the batcher serves, else the error a request gets now: for good once it is
        dead (marked here too when its thread has ended other than by ``close``); for as long as
        the running loop pass has taken more than ``stall_s``."""
        if self._dead is None and not self._closed and not self._thread.is_alive():
            self._die("its batcher thread stopped")
        if self._dead is not None:
            return self._unavailable()
        since = self._pass_since
        if since is not None and time.monotonic() - since > self.stall_s:
            return ModelUnavailableError(
                f"{self.model_id} is stuck: a decode pass has not returned in {self.stall_s:g} s (an "
                "engine call, or the wait for the model's lock, hangs). Requests fail until it returns; "
                "restart the server if it does not."
            )
        return None

    def submit(self, prompt_ids: list[int], params: SamplingParams, on_event: Callable[[Event], None]) -> Job:
        job = Job(list(prompt_ids), params, on_event)
        dead = self.health()
        if dead is not None:
            raise dead
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

    def run(self, prompt_ids: list[int], params: SamplingParams,
            poll_s: float = 0.5) -> tuple[list[TokenEvent], DoneEvent]:
        """Submit and wait (for scripts and tests): the token events and the done event. Raises the
        request's error, or ``ModelUnavailableError`` as soon as a look every ``poll_s`` finds the
        batcher dead."""
        events: queue.Queue = queue.Queue()
        job = self.submit(prompt_ids, params, events.put)
        tokens = []
        while True:
            try:
                ev = events.get(timeout=poll_s)
            except queue.Empty:
                if (dead := self.health()) is not None:
                    job.cancel()
                    raise dead from None
                continue
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

    def _run(self) -> None:
        """The thread: the loop, then every request still held ends with an error."""
        reason = "its batcher thread stopped"
        try:
            self._loop()
        except BaseException as err:  # re-raised: the thread's own report shows the traceback
            reason = f"its batcher thread stopped on {_describe(err)}"
            raise
        finally:
            if not self._closed:
                self._die(reason)
            error = self._unavailable() if self._dead is not None else (
                self._close_error or ServerClosedError("The server shut down before this request finished."))
            with self._cv:
                jobs = self.active + self.joining + list(self.waiting)
                self.active, self.joining, self.waiting = [], [], collections.deque()
            self._tell_all(jobs, error)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._closed and self._dead is None and not (self.waiting or self.active or self.joining):
                    self._cv.wait(0.5)
                if self._closed or self._dead is not None:
                    return
                if not self.joining:  # a new group: everything waiting that fits
                    while self.waiting and len(self.active) + len(self.joining) < self.max_batch:
                        self.joining.append(self.waiting.popleft())
            self._pass_since = time.monotonic()
            try:
                self._admit()
                self._drop([j for j in self.active if j.cancelled], "cancelled")
                if self.active:
                    self._step()
            except Exception as err:  # noqa: BLE001 -- the thread's boundary: it ends the engine's requests only
                self._recover(err)
            finally:
                self._pass_since = None

    def _recover(self, err: Exception) -> None:
        """End the requests in the engine with ``err``, reset the engine; die if that cannot help."""
        self._failures += 1
        error = err if isinstance(err, WorkbenchError) else GenerationFailedError(
            f"Generation failed inside {self.model_id} ({_describe(err)}); the request was dropped "
            "and the server keeps serving. Retry; if it repeats, reinstall the model or report it "
            "with the prompt."
        )
        with self._cv:
            jobs, self.active, self.joining, self._prefill = self.active + self.joining, [], [], None
        reason = None
        try:
            self.engine.reset()
        except Exception as reset_err:  # noqa: BLE001 -- the engine's state is lost: the batcher dies
            reason = f"its engine could not be reset after {_describe(err)} ({_describe(reset_err)})"
        if reason is None and self._failures >= self.max_failures:
            reason = f"{self._failures} decode passes failed in a row, the last on {_describe(err)}"
        if reason is not None:  # dead before these hear of it: what they send next gets 503
            self._die(reason)
        self._tell_all(jobs, error)

    def _die(self, reason: str) -> None:
        """Mark the batcher dead; the requests still queued end now (the loop ends its own)."""
        with self._cv:
            if self._dead is None:
                self._dead = reason
            jobs, self.waiting = list(self.waiting), collections.deque()
            self._cv.notify_all()
        self._tell_all(jobs, self._unavailable())

    def _unavailable(self) -> ModelUnavailableError:
        return ModelUnavailableError(
            f"{self.model_id} failed and was stopped: {self._dead}. Send the request again (the server "
            "loads the model afresh); if it happens again, reinstall the model "
            f"(`workbench store install --force {self.model_id}`) or report it."
        )

    def _tell(self, job: Job, event: Event) -> None:
        """Send ``event`` to ``job``'s listener; nothing after its Done or Error event."""
        if job.ended:
            return
        if isinstance(event, (DoneEvent, ErrorEvent)):
            job.ended = True
        job.on_event(event)

    def _tell_all(self, jobs: list[Job], error: WorkbenchError) -> None:
        for job in jobs:
            try:
                self._tell(job, ErrorEvent(error))
            except Exception:  # noqa: BLE001 -- a listener that broke its contract must not keep the others waiting
                job.cancel()

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
        self._failures = 0
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
        pending = self._pending(job)
        if pending and not pending.endswith("\ufffd"):  # an incomplete character waits for its bytes
            job.text, job.read = job.text + pending, len(job.ids)
        cut = _stop_at(job.text, p.stop)
        visible = cut if cut is not None else len(job.text) - _held_back(job.text, p.stop)
        piece = ""
        if visible > job.sent:
            piece, job.sent = job.text[job.sent:visible], visible
        lp = token_logprobs(logits, token_id, p.logprobs) if p.logprobs is not None else None
        self._tell(job, TokenEvent(piece, token_id, self.tokenizer.decode([token_id]), lp))
        if cut is not None:
            self._finish(job, "stop", job.text[:cut])
            return True
        if len(job.ids) >= p.max_tokens:
            self._finish(job, "length")
            return True
        return False

    def _pending(self, job: Job) -> str:
        """The text of ``job.ids[job.read:]`` to append to ``job.text`` (it may end in an incomplete
        character): what ``decode(ids)`` adds while it extends ``job.text``; after the first time it
        does not, the new ids decoded after up to ``_CONTEXT_TOKENS`` ids before them."""
        ids, read = job.ids, job.read
        if read == len(ids):
            return ""
        decode = lambda x: self.tokenizer.decode(x, skip_special_tokens=True)
        if job.stable:
            full = decode(ids)
            if full.startswith(job.text):
                return full[len(job.text):]
            job.stable = False
        start = max(0, read - _CONTEXT_TOKENS)
        context, new = decode(ids[start:read]), decode(ids[start:])
        return new[len(context):] if new.startswith(context) else decode(ids[read:])

    def _finish(self, job: Job, reason: str, text: str | None = None) -> None:
        if text is None:  # the held-back end is final now, an incomplete character included
            text = job.text + self._pending(job)
            cut = _stop_at(text, job.params.stop)
            if cut is not None:
                text, reason = text[:cut], "stop" if reason != "cancelled" else reason
        end = time.perf_counter()
        self._recent_s.append(end - job.submitted)
        if reason != "cancelled":
            self._failures = 0
        if self.metrics:
            self.metrics.finished(self.model_id, reason, len(job.prompt_ids), len(job.ids))
        ms = lambda t: ((t or end) - job.submitted) * 1000
        self._tell(job, DoneEvent(
            text=text, finish_reason=reason, prompt_tokens=len(job.prompt_ids),
            completion_tokens=len(job.ids), queue_ms=ms(job.started), ttft_ms=ms(job.first),
            total_ms=ms(end), tail=text[job.sent:],
        ))


_CONTEXT_TOKENS = 5  # ids decoded before new ones once decode(ids) stopped extending the text


def _describe(err: BaseException) -> str:
    message = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


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
