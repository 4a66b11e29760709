"""The FastAPI app: routes, the API-key check, body limits, CORS and JSON errors.

``create_app(registry, keys)`` returns an ASGI app that serves ``registry``'s models and its
store (``/v1/store/*``, see ``store_api``); ``create_app(None, keys, store=store)`` serves the store
only (``workbench serve --store-only``: no model is loaded, torch is not even imported). Every path
but ``GET /health`` needs ``Authorization: Bearer <key>`` with a key of ``keys`` (else 401, before
the body is read) holding the scope the path needs (``store_api.scope_of``: ``generate`` for the
model routes, ``pull`` to read the store, ``publish`` to send to it; else 403 naming the scope).
Bodies over ``max_body_bytes`` get 413 (by Content-Length; a chunked body is
read here, up to the limit; blob uploads stream their body with their own cap). CORS is off unless ``cors_origins`` lists origins. Every error is an OpenAI-style
JSON body ``{"error": {"message", "type", "param", "code"}}`` whose message says how to fix it;
a full queue adds ``Retry-After``. A key sent in the URL (``?api_key=``) is refused like any
missing key, with a hint to use the header. The app never logs keys, prompts or outputs (the
server's log formatter redacts keys from uvicorn's lines, see ``server``).
"""
from __future__ import annotations

import time

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import InvalidInputError, UnknownModelError, WorkbenchError
from . import store_api
from .errors import AuthError, BodyTooLargeError, QueueFullError, ServeError
from .secrets import holds_secret
from .keys import KeyStore
from .metrics import CONTENT_TYPE, ServeMetrics

MAX_BODY_BYTES = 1_000_000
ROUTES = ("/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions", "/api/generate")
STORE_ROUTES = ("/v1/store/index", "/v1/store/entries", "/v1/store/blobs", "/v1/store/uploads")


def _error(status: int, message: str, type_: str, code: str | None, param: str | None = None,
           headers: dict | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def error_response(err: WorkbenchError) -> JSONResponse:
    if isinstance(err, ServeError):
        status, type_, code = err.status, err.type, err.code
    elif isinstance(err, UnknownModelError):
        status, type_, code = 404, "invalid_request_error", "model_not_found"
    elif isinstance(err, InvalidInputError):
        status, type_, code = 400, "invalid_request_error", "invalid_request"
    else:
        status, type_, code = 500, "server_error", None
    headers = {"Retry-After": str(err.retry_after)} if isinstance(err, QueueFullError) else None
    return _error(status, str(err), type_, code, headers=headers)


class Guard:
    """ASGI middleware: key check, body limit and request metrics, before any route runs."""

    def __init__(self, app, keys: KeyStore, metrics: ServeMetrics, max_body_bytes: int):
        self.app, self.keys, self.metrics, self.max_body = app, keys, metrics, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        status = [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            if path != "/health":
                auth = headers.get("authorization", "")
                key = auth[7:].strip() if auth[:7].lower() == "bearer " else None
                info = self.keys.authenticate(key)
                if info is None:
                    query = scope.get("query_string", b"").decode("latin-1")
                    hint = (" Keys go in that header, never in the URL (URLs end up in logs and histories)."
                            if holds_secret("?" + query) else "")
                    err = AuthError(
                        "Missing or invalid API key. Send 'Authorization: Bearer <key>'; create a key "
                        f"with `workbench keys create NAME` or on the API page.{hint}"
                    )
                    resp = error_response(err)
                    resp.headers["WWW-Authenticate"] = "Bearer"
                    return await resp(scope, receive, send_status)
                needed = store_api.scope_of(scope.get("method", ""), path)
                if needed is not None and needed not in info.scopes:
                    err = store_api.missing_scope_error(needed, scope.get("method", ""), path)
                    return await error_response(err)(scope, receive, send_status)
            if store_api.streams_body(scope.get("method", ""), path):  # capped by the route itself
                return await self.app(scope, receive, send_status)
            length = headers.get("content-length", "")
            if length.isdigit() and int(length) > self.max_body:
                return await error_response(self._too_large())(scope, receive, send_status)
            if not length and scope.get("method") in ("POST", "PUT", "PATCH"):  # chunked: read it here
                body = await self._read_bounded(receive)
                if body is None:
                    return await error_response(self._too_large())(scope, receive, send_status)
                receive = self._replay(body, receive)
            await self.app(scope, receive, send_status)
        finally:
            route = path if path in ROUTES else next((r for r in STORE_ROUTES if path.startswith(r)), "other")
            self.metrics.request(scope.get("method", ""), route, status[0])

    def _too_large(self) -> BodyTooLargeError:
        return BodyTooLargeError(
            f"The request body is over {self.max_body:,} bytes, the server's limit. Send a shorter prompt."
        )

    async def _read_bounded(self, receive) -> bytes | None:
        """The whole body, or None as soon as it passes the limit."""
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return b""
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                return None
        return body

    @staticmethod
    def _replay(body: bytes, receive):
        sent = [False]

        async def replay():
            if not sent[0]:
                sent[0] = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay


def create_app(registry, keys: KeyStore, metrics: ServeMetrics | None = None,
               cors_origins: tuple[str, ...] | list[str] = (), max_body_bytes: int = MAX_BODY_BYTES,
               store=None) -> FastAPI:
    """``registry`` (a ``ModelRegistry``) serves models; None serves ``store`` only."""
    if registry is None and store is None:
        raise WorkbenchError("create_app needs a registry (models) or a store (--store-only).")
    store = store if store is not None else registry.store
    metrics = metrics or (registry.metrics if registry is not None else None) or ServeMetrics()
    app = FastAPI(title="GPT Store Workbench API", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.registry, app.state.keys, app.state.metrics = registry, keys, metrics
    app.state.store = store
    app.state.store_index = store_api.StoreIndex(store)
    app.state.uploads = store_api.Uploads(store)
    app.state.started = time.time()
    if registry is not None:
        from . import generate_api, openai_api  # torch comes with them: not for --store-only

        app.include_router(openai_api.router)
        app.include_router(generate_api.router)
    app.include_router(store_api.router)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        batchers = dict(registry.batchers) if registry is not None else {}
        return PlainTextResponse(metrics.render(batchers), media_type=CONTENT_TYPE)

    @app.exception_handler(WorkbenchError)
    async def on_workbench_error(request: Request, err: WorkbenchError):
        return error_response(err)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, err: RequestValidationError):
        problems = err.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return _error(400, "The body is not valid JSON: check quotes, commas and brackets, and send "
                          "Content-Type: application/json.", "invalid_request_error", "invalid_json")
        parts, param = [], None
        for p in problems:
            loc = [str(x) for x in p.get("loc", ()) if x != "body"]
            param = param or ".".join(loc) or None
            parts.append(f"'{'.'.join(loc) or 'body'}': {p.get('msg')}")
        return _error(422, "Bad request fields: " + "; ".join(parts) + ". Fix their types (see the "
                      "OpenAI API reference for each field).", "invalid_request_error", "invalid_type", param)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, err: StarletteHTTPException):
        routes = (ROUTES if registry is not None else ("/health", "/metrics")) + STORE_ROUTES
        only = "" if registry is not None else " This server serves its store only (--store-only)."
        message = {404: f"No route {request.url.path}; the API has {', '.join(routes)}.{only}",
                   405: f"{request.method} is not allowed on {request.url.path}."}.get(err.status_code, str(err.detail))
        return _error(err.status_code, message, "invalid_request_error", None)

    app.add_middleware(Guard, keys=keys, metrics=metrics, max_body_bytes=max_body_bytes)
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Range"],
        )
    return app

