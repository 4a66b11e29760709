"""The origin's route: ``POST /api/generate?model=ID`` with form field ``text`` (or a JSON body).

Answers ``{"generated_text", "model", "finish_reason", "usage", "timing"}``. Optional fields:
``max_new_tokens`` (or ``max_tokens``, default 64), ``temperature`` (default 0: greedy), ``top_p``,
``top_k``, ``seed``, ``stop``, ``chat`` (wrap ``text`` in the model's chat template). ``model`` may
also come in the body. Form values are strings and are converted like JSON ones.

``model`` may be an app's id: ``text`` is then the question, put to the app as a chat turn
(``chat`` is ignored: the app's own prompt assembly decides), with the app's instructions,
retrieved passages and generation settings (the fields given override them); the answer adds
``citations`` (``[{file, heading, start, end, score, text}]``, best first).
"""
from __future__ import annotations

import json

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from .bridge import AsyncRun
from .errors import BadRequestError
from .openai_api import resolve, usage
from .prompting import app_turn, chat_ids, check_budget, completion_ids
from .schemas import GenerateRequest

router = APIRouter()


async def _fields(request: Request) -> dict:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        raw = await request.body()
        try:
            data = json.loads(raw or b"null")
        except ValueError:
            raise BadRequestError(
                "The body is not valid JSON. Send form data (text=...) or a JSON object like "
                '{"text": "Once upon a time"}.'
            ) from None
        if not isinstance(data, dict):
            raise BadRequestError('The JSON body must be an object like {"text": "Once upon a time"}.')
        return data
    if kind in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}
    raise BadRequestError(
        f"Content type {kind or 'missing'!r} is not supported: send form data "
        "(requests.post(url, data={'text': ...})) or JSON (json={'text': ...})."
    )


@router.post("/api/generate")
async def generate(request: Request, model: str | None = None) -> dict:
    fields = await _fields(request)
    name = model or fields.pop("model", None)
    if not name:
        raise BadRequestError("Name the model: POST /api/generate?model=ID (GET /v1/models lists the ids).")
    fields.pop("model", None)
    try:
        body = GenerateRequest.model_validate(fields)
    except ValidationError as err:
        raise BadRequestError(_explain(err)) from None
    batcher, app_id = await resolve(request, name)
    m = batcher.model
    extra = {}
    if app_id is not None:  # retrieval, prompt assembly and tokenizing: in a worker thread too
        overrides = body.overrides()
        turn = await run_in_threadpool(app_turn, request.app.state.registry.store, app_id, m,
                                       [{"role": "user", "content": body.text}], overrides)
        ids, params = turn.ids, body.app_params(turn.prepared.settings)
        extra["citations"] = [c.to_json() for c in turn.prepared.citations]
    else:
        if body.chat:  # tokenizing and templating run in a worker thread, off the event loop
            ids = await run_in_threadpool(chat_ids, m, [{"role": "user", "content": body.text}])
        else:
            ids = await run_in_threadpool(completion_ids, m, body.text)
        params = body.to_params(room=m.context_length - len(ids))
    check_budget(m, len(ids), params.max_tokens)
    _, done = await AsyncRun(batcher, ids, params).collect(request)
    return {
        "generated_text": done.text,
        "model": app_id or batcher.model_id,
        "finish_reason": done.finish_reason,
        "usage": usage(done),
        "timing": {
            "queue_ms": done.queue_ms, "ttft_ms": done.ttft_ms, "total_ms": done.total_ms,
            "tokens_per_s": done.tokens_per_s,
        },
        **extra,
    }


def _explain(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        field = ".".join(str(x) for x in e["loc"]) or "body"
        parts.append(f"'{field}': {e['msg']}")
    return "Bad fields: " + "; ".join(parts) + ". 'text' is required; numbers must be numbers."
