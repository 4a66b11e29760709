"""A batcher job seen from asyncio: events cross from the batcher thread to the event loop.

``AsyncRun(batcher, prompt_ids, params)`` submits at once (so a full queue or a dead batcher
raises before any response starts). ``events()`` yields ``TokenEvent``s then the ``DoneEvent`` and
raises the request's error; while no event comes it looks at ``batcher.health()`` every
``POLL_S`` seconds and raises its ``ModelUnavailableError`` (503) once the batcher is dead or
stuck, so no wait outlasts the batcher. Leaving it early (a client that disconnected, a cancelled
task) cancels the job, which leaves the batch before the next step. ``collect(request)`` waits for
the end while watching the client (``request.is_disconnected()`` every ``POLL_S`` seconds), and
cancels the job if it goes away.
"""
from __future__ import annotations

import asyncio

from .batching import Batcher, DoneEvent, ErrorEvent, TokenEvent
from .sampling import SamplingParams

POLL_S = 0.25


class AsyncRun:
    def __init__(self, batcher: Batcher, prompt_ids: list[int], params: SamplingParams):
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.batcher = batcher
        self.job = batcher.submit(prompt_ids, params, self._put)

    def _put(self, event) -> None:  # called in the batcher thread
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.job.cancel()

    async def events(self):
        try:
            while True:
                if not self.queue.empty():
                    event = self.queue.get_nowait()
                else:
                    try:
                        event = await asyncio.wait_for(self.queue.get(), POLL_S)
                    except asyncio.TimeoutError:  # quiet: is the batcher still there?
                        if (dead := self.batcher.health()) is not None:
                            raise dead from None
                        continue
                if isinstance(event, ErrorEvent):
                    raise event.error
                yield event
                if isinstance(event, DoneEvent):
                    return
        finally:
            self.job.cancel()

    async def collect(self, request=None) -> tuple[list[TokenEvent], DoneEvent]:
        watcher = asyncio.create_task(self._watch(request)) if request is not None else None
        tokens: list[TokenEvent] = []
        try:
            async for event in self.events():
                if isinstance(event, TokenEvent):
                    tokens.append(event)
                else:
                    return tokens, event
        finally:
            if watcher:
                watcher.cancel()
        raise AssertionError("unreachable: events() ends with a DoneEvent or raises")

    async def _watch(self, request) -> None:
        while not self.job.cancelled:
            if await request.is_disconnected():
                self.job.cancel()
                return
            await asyncio.sleep(POLL_S)
