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


# --- the store routes (``store_api``) ----------------------------------------------------------

class ForbiddenError(ServeError):
    status, type, code = 403, "permission_error", "missing_scope"


class NotFoundError(ServeError):
    status, type, code = 404, "invalid_request_error", "not_found"


class ConflictError(ServeError):
    status, type, code = 409, "invalid_request_error", "conflict"


class MissingError(ServeError):
    """Commit before every blob arrived; ``missing`` lists their sha256s."""

    status, type, code = 409, "invalid_request_error", "missing_blobs"

    def __init__(self, message: str, missing: list[str]):
        super().__init__(message)
        self.missing = missing


class BlobTooLargeError(ServeError):
    status, type, code = 413, "invalid_request_error", "blob_too_large"


class RangeError(ServeError):
    status, type, code = 416, "invalid_request_error", "range_not_satisfiable"

    def __init__(self, message: str, size: int):
        super().__init__(message)
        self.size = size


class BlobMismatchError(ServeError):
    status, type, code = 422, "invalid_request_error", "sha256_mismatch"


class BadEntryError(ServeError):
    status, type, code = 400, "invalid_request_error", "invalid_entry"


class NoSpaceError(ServeError):
    status, type, code = 507, "server_error", "insufficient_storage"
