"""The one place where failures become HTTP answers with the contract's error body:

    {"error": true, "message": "...", "errors": {"field": ["..."]}}

gRPC status -> HTTP status follows the grpc-gateway table; request validation (FastAPI's 422)
becomes 400; unknown routes and wrong methods use the same body; anything unexpected is a 500
that logs the cause and shows none of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.responses import OrjsonResponse
from libs.errors import NON_FIELD, VALIDATION_MESSAGE, DomainError, Overloaded, RateLimited
from libs.grpc_errors import decode_rpc_error, grpc_code_for
from libs.logging import get_logger

log = get_logger("gateway.errors")

GRPC_TO_HTTP: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

HTTP_MESSAGES = {
    404: "Not found.",
    405: "Method not allowed.",
    413: "Request body is too large.",
    415: "Unsupported media type.",
    429: "Too many requests.",
    499: "The request was cancelled.",
    500: "Internal server error.",
    503: "A backend service is unavailable.",
    504: "A backend service did not answer in time.",
}


# A refusal under overload (gateway/load_shedding.py, a service's concurrency limit, identity's
# hashing queue): 503 + Retry-After, so clients back off instead of timing out.
OVERLOADED_MESSAGE = "The service is overloaded; retry shortly."


def retry_after(request: Request) -> dict[str, str]:
    return {"Retry-After": str(request.app.state.settings.overload_retry_after_s)}


# Statuses our services answer on purpose, with a message written for the client.
SERVICE_DECIDED = frozenset({400, 401, 403, 404, 409})


class ApiError(Exception):
    """Raised by routes for answers decided in the gateway itself."""

    def __init__(
        self,
        status: int,
        message: str | None = None,
        errors: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.status = status
        self.errors = {key: list(value) for key, value in (errors or {}).items()}
        self.message = message or (
            VALIDATION_MESSAGE if self.errors else HTTP_MESSAGES.get(status, "Request failed.")
        )
        super().__init__(self.message)

    @classmethod
    def field(cls, field: str, message: str, status: int = 400) -> ApiError:
        return cls(status, VALIDATION_MESSAGE, {field: [message]})


class BodyTooLarge(Exception):
    """The request body grew past the limit while being read."""


def error_body(message: str, errors: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    return {
        "error": True,
        "message": message,
        "errors": {k: list(v) for k, v in (errors or {}).items()},
    }


def error_response(
    status: int, message: str, errors: Mapping[str, Sequence[str]] | None = None
) -> OrjsonResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return OrjsonResponse(error_body(message, errors), status_code=status, headers=headers)


def http_status_for(code: grpc.StatusCode) -> int:
    return GRPC_TO_HTTP.get(code, 500)


async def _api_error(_: Request, exc: Exception) -> OrjsonResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, exc.errors)


async def _domain_error(request: Request, exc: Exception) -> OrjsonResponse:
    assert isinstance(exc, DomainError)
    if isinstance(exc, Overloaded):
        return _overloaded(request)
    if isinstance(exc, RateLimited):
        return rate_limited_response(exc.message, exc.retry_after_s)
    return error_response(http_status_for(grpc_code_for(exc)), exc.message, exc.field_errors)


def rate_limited_response(message: str, retry_after_s: int) -> OrjsonResponse:
    """429 with the contract body and Retry-After in whole seconds (RFC 9110)."""
    response = error_response(429, message)
    response.headers["Retry-After"] = str(max(1, retry_after_s))
    return response


def _overloaded(request: Request) -> OrjsonResponse:
    response = error_response(503, OVERLOADED_MESSAGE)
    response.headers.update(retry_after(request))
    return response


async def rpc_error_response(request: Request, exc: Exception) -> OrjsonResponse:
    assert isinstance(exc, grpc.RpcError)
    failure = decode_rpc_error(exc)
    if failure.overloaded:  # a service's concurrency limit or identity's hashing queue
        return _overloaded(request)
    status = http_status_for(failure.code)
    if failure.code == grpc.StatusCode.RESOURCE_EXHAUSTED and failure.retry_after_s is not None:
        # A service's rate limit (RetryInfo attached), not gRPC's own RESOURCE_EXHAUSTED.
        return rate_limited_response(failure.message, failure.retry_after_s)
    if status not in SERVICE_DECIDED:
        # Transport-level failures (gRPC's own RESOURCE_EXHAUSTED, timeouts, crashes) say things
        # about our internals: they are logged, never shown.
        log.warning("backend call failed", grpc_status=failure.code.name, detail=failure.message)
        return error_response(status, HTTP_MESSAGES.get(status, HTTP_MESSAGES[500]))
    return error_response(status, failure.message, failure.field_errors)


async def _http_error(_: Request, exc: Exception) -> OrjsonResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = HTTP_MESSAGES.get(exc.status_code) or str(exc.detail)
    response = error_response(exc.status_code, message)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def validation_errors(errors: Sequence[Any]) -> dict[str, list[str]]:
    """Pydantic errors as the contract's `errors` map, keyed by the field's name."""
    fields: dict[str, list[str]] = {}
    for error in errors:
        location = [str(part) for part in error.get("loc", ()) if part not in ("body", "query")]
        name = ".".join(location) or NON_FIELD
        kind = error.get("type", "")
        if kind == "missing":
            message = "This field is required."
        elif kind == "extra_forbidden":
            message = "Unknown field."
        else:
            message = str(error.get("msg", "Invalid value."))
        fields.setdefault(name, []).append(message)
    return fields


async def _request_validation(_: Request, exc: Exception) -> OrjsonResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if errors and all(error.get("loc", ("",))[0] == "path" for error in errors):
        # /api/courses/abc/ names no resource: that is a 404, as for any unknown URL.
        return error_response(404, HTTP_MESSAGES[404])
    return error_response(400, VALIDATION_MESSAGE, validation_errors(errors))


async def _body_too_large(_: Request, exc: Exception) -> OrjsonResponse:
    return error_response(413, HTTP_MESSAGES[413])


async def _unexpected(_: Request, exc: Exception) -> OrjsonResponse:
    log.exception("unhandled error", error=repr(exc))
    return error_response(500, HTTP_MESSAGES[500])


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(grpc.RpcError, rpc_error_response)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(BodyTooLarge, _body_too_large)
    app.add_exception_handler(Exception, _unexpected)
