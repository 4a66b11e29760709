"""Errors of the HTTP layer. Each is a ``WorkbenchError`` whose message says how to fix it, with
the HTTP status and the OpenAI-style ``type``/``code`` it is answered with."""
from __future__ import annotations

from ..errors import InvalidInputError, WorkbenchError


class ServeError(WorkbenchError):
    status = 500
    type = "server_error"
    code: str | None = None


class BadRequestError(ServeError, InvalidInputError):
    status, type, code = 400, "invalid_request_error", "invalid_request"


class AuthError(ServeError):
    status, type, code = 401, "authentication_error", "invalid_api_key"


class ModelNotServedError(ServeError):
    status, type, code = 404, "invalid_request_error", "model_not_found"


class BodyTooLargeError(ServeError):
    status, type, code = 413, "invalid_request_error", "request_too_large"


class QueueFullError(ServeError):
    """Raised when the bounded wait queue of a model is full; ``retry_after`` is in seconds."""

    status, type, code = 429, "rate_limit_error", "queue_full"

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


class GenerationFailedError(ServeError):
    status, type, code = 500, "server_error", "generation_failed"


class ServerClosedError(ServeError):
    status, type, code = 503, "server_error", "shutting_down"


class ModelUnavailableError(ServeError):
    """The model's batcher cannot serve (its engine failed past recovery, or its thread ended)."""

    status, type, code = 503, "server_error", "model_unavailable"
