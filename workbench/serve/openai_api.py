"""OpenAI-compatible routes: ``GET /v1/models``, ``POST /v1/completions``,
``POST /v1/chat/completions``, each non-streaming or streaming (server-sent events, one chunk per
token with visible text, then a last chunk with ``finish_reason`` and the text held back till the
end, then ``data: [DONE]``): a stream's texts concatenate to exactly the non-streamed text.
Prompts are tokenized and templated in a worker thread, off the event loop.

``logprobs`` (completions: an int) and ``logprobs``/``top_logprobs`` (chat) come from the model's
own distribution at each step (softmax of the raw logits), whatever temperature drew the token.
An error after streaming started is sent as one ``data: {"error": ...}`` event before ``[DONE]``.

Apps are models here (``GET /v1/models`` lists them with ``"kind": "app"`` and their
``base_model``). A request naming an app runs on its base model's batcher with the app's
instructions, examples, generation settings (the request's values override them) and the
passages retrieved for the last user message (completions: the prompt is the question); the
answer has ``citations`` (``[{file, heading, start, end, score, text}]``, best first) as an extra
top-level field, in a stream on the chunk with ``finish_reason``. Retrieval and prompt assembly
run in a worker thread too.
"""
from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..errors import WorkbenchError
from .batching import DoneEvent, TokenEvent
from .bridge import AsyncRun
from .prompting import app_turn, chat_ids, check_budget, completion_ids
from .schemas import ChatRequest, CompletionRequest

router = APIRouter()


def error_body(err: WorkbenchError) -> dict:
    return {"error": {
        "message": str(err), "type": getattr(err, "type", "invalid_request_error"),
        "param": None, "code": getattr(err, "code", None),
    }}


def usage(done: DoneEvent) -> dict:
    return {
        "prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
        "total_tokens": done.prompt_tokens + done.completion_tokens,
    }


def _finish(reason: str) -> str:
    return "length" if reason == "length" else "stop"


@router.get("/v1/models")
async def list_models(request: Request) -> dict:
    registry = request.app.state.registry
    created = int(request.app.state.started)
    models, apps = await run_in_threadpool(lambda: (registry.ids(), registry.apps()))  # apps' cards are read
    owner = "gpt-store-workbench"
    return {"object": "list", "data": [
        *({"id": i, "object": "model", "created": created, "owned_by": owner, "kind": "model"} for i in models),
        *({"id": i, "object": "model", "created": created, "owned_by": owner, "kind": "app", "base_model": base}
          for i, base in sorted(apps.items())),
    ]}


async def resolve(request: Request, name: str):
    """``(batcher, app_id)``: the batcher of model ``name`` (app_id None) or of app ``name``'s base;
    a first use loads the model in a worker thread, off the event loop."""
    registry = request.app.state.registry

    def look_up():
        batcher = registry.get(name)
        return batcher, (name if registry.app_base(name) is not None else None)

    return await run_in_threadpool(look_up)


@dataclass
class Turn:
    """A request made ready for its batcher; ``citations`` is None unless the request named an app."""

    batcher: object
    ids: list[int]
    params: object
    model: str
    citations: list[dict] | None = None

    @property
    def extra(self) -> dict:
        return {} if self.citations is None else {"citations": self.citations}


async def prepare_turn(request: Request, body, ids_of, messages_of) -> Turn:
    """Resolve ``body.model`` and build the prompt ids in a worker thread: ``ids_of(model)`` for a
    model, the app's own turn (``prompting.app_turn`` on ``messages_of()``) for an app."""
    batcher, app_id = await resolve(request, body.model)
    if app_id is None:
        ids = await run_in_threadpool(ids_of, batcher.model)  # up to 200,000 characters: not on the loop
        params = body.to_params(room=batcher.model.context_length - len(ids))
        citations = None
    else:
        overrides, logprobs = body.overrides(), body.logprobs_k()
        turn = await run_in_threadpool(app_turn, request.app.state.registry.store, app_id, batcher.model,
                                       messages_of(), overrides)
        ids, params = turn.ids, body.app_params(turn.prepared.settings, logprobs)
        citations = [c.to_json() for c in turn.prepared.citations]
    check_budget(batcher.model, len(ids), params.max_tokens)
    return Turn(batcher, ids, params, app_id or batcher.model_id, citations)


def _sse(payload: dict | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"


async def _stream(run: AsyncRun, chunk, last_chunk, include_usage: bool, usage_chunk):
    try:
        async for event in run.events():
            if isinstance(event, TokenEvent):
                body = chunk(event)
                if body is not None:
                    yield _sse(body)
            else:
                yield _sse(last_chunk(event))
                if include_usage:
                    yield _sse(usage_chunk(event))
    except WorkbenchError as err:
        yield _sse(error_body(err))
    yield _sse("[DONE]")


# --- completions ------------------------------------------------------------------------------

def _completion_logprobs(tokens: list[TokenEvent], decode) -> dict:
    offsets, at = [], 0
    for t in tokens:
        offsets.append(at)
        at += len(t.token)
    return {
        "tokens": [t.token for t in tokens],
        "token_logprobs": [t.logprob.logprob for t in tokens],
        "top_logprobs": [{decode(i): lp for i, lp in t.logprob.top} for t in tokens],
        "text_offset": offsets,
    }


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request):
    turn = await prepare_turn(request, body, lambda m: completion_ids(m, body.prompt_text()),
                              lambda: [{"role": "user", "content": body.prompt_text()}])
    batcher, ids, params = turn.batcher, turn.ids, turn.params
    run = AsyncRun(batcher, ids, params)
    rid, created, model = f"cmpl-{secrets.token_hex(12)}", int(time.time()), turn.model
    decode = lambda i: batcher.tokenizer.decode([i])

    def choice(text: str, logprobs, finish):
        return {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}

    def envelope(choices: list, **extra) -> dict:
        return {"id": rid, "object": "text_completion", "created": created, "model": model,
                "choices": choices, **extra}

    if body.stream:
        def chunk(ev: TokenEvent):
            if not ev.text and params.logprobs is None:
                return None
            lp = _completion_logprobs([ev], decode) if params.logprobs is not None else None
            return envelope([choice(ev.text, lp, None)])

        include = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            _stream(run, chunk, lambda d: envelope([choice(d.tail, None, _finish(d.finish_reason))], **turn.extra),
                    include, lambda d: envelope([], usage=usage(d))),
            media_type="text/event-stream",
        )
    tokens, done = await run.collect(request)
    lp = _completion_logprobs(tokens, decode) if params.logprobs is not None else None
    return envelope([choice(done.text, lp, _finish(done.finish_reason))], usage=usage(done), **turn.extra)


# --- chat ---------------------------------------------------------------------------------------

def _chat_logprobs(tokens: list[TokenEvent], decode) -> dict:
    def entry(token: str, lp: float) -> dict:
        return {"token": token, "logprob": lp, "bytes": list(token.encode("utf-8"))}

    return {"content": [
        {**entry(t.token, t.logprob.logprob), "top_logprobs": [entry(decode(i), lp) for i, lp in t.logprob.top]}
        for t in tokens
    ]}


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatRequest, request: Request):
    messages = [m.as_dict() for m in body.messages]
    turn = await prepare_turn(request, body, lambda m: chat_ids(m, messages), lambda: messages)
    batcher, ids, params = turn.batcher, turn.ids, turn.params
    run = AsyncRun(batcher, ids, params)
    rid, created, model = f"chatcmpl-{secrets.token_hex(12)}", int(time.time()), turn.model
    decode = lambda i: batcher.tokenizer.decode([i])

    def envelope(choices: list, obj: str, **extra) -> dict:
        return {"id": rid, "object": obj, "created": created, "model": model, "choices": choices, **extra}

    if body.stream:
        first = [True]

        def chunk(ev: TokenEvent):
            if not ev.text and params.logprobs is None:
                return None
            delta = {"content": ev.text}
            if first[0]:
                delta, first[0] = {"role": "assistant", "content": ev.text}, False
            lp = _chat_logprobs([ev], decode) if params.logprobs is not None else None
            return envelope([{"index": 0, "delta": delta, "logprobs": lp, "finish_reason": None}],
                            "chat.completion.chunk")

        def last(done: DoneEvent) -> dict:
            delta = {"content": done.tail} if done.tail else {}
            if first[0]:
                delta = {"role": "assistant", "content": done.tail}
            return envelope([{"index": 0, "delta": delta, "logprobs": None,
                              "finish_reason": _finish(done.finish_reason)}], "chat.completion.chunk", **turn.extra)

        include = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            _stream(run, chunk, last, include, lambda d: envelope([], "chat.completion.chunk", usage=usage(d))),
            media_type="text/event-stream",
        )
    tokens, done = await run.collect(request)
    lp = _chat_logprobs(tokens, decode) if params.logprobs is not None else None
    return envelope([{
        "index": 0, "message": {"role": "assistant", "content": done.text}, "logprobs": lp,
        "finish_reason": _finish(done.finish_reason),
    }], "chat.completion", usage=usage(done), **turn.extra)
