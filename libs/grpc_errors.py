"""Domain errors <-> gRPC status with google.rpc rich details, in both directions.

Servers call `abort_with(context, error)`; clients call `decode_rpc_error(err)` to read the code,
message and field violations back, or `as_domain_error(err)` to re-raise a downstream failure as
their own domain error.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from libs.errors import (
    DeadlineExceeded,
    DomainError,
    FailedPrecondition,
    FieldErrors,
    InvalidArgument,
    NotFound,
    Overloaded,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
    Unavailable,
)

_STATUS_DETAILS_KEY = "grpc-status-details-bin"
# ErrorInfo reason of an Overloaded refusal: tells it apart from other RESOURCE_EXHAUSTED
# answers (gRPC's own size limits, a per-caller rate limit) wherever the status is read.
OVERLOADED_REASON = "OVERLOADED"
ERROR_DOMAIN = "courseplatform"

DOMAIN_TO_GRPC: dict[type[DomainError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    NotFound: grpc.StatusCode.NOT_FOUND,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    # Last of the two RESOURCE_EXHAUSTED errors: that code reads back as RateLimited (only
    # with its RetryInfo), Overloaded only with its ErrorInfo marker (as_domain_error).
    RateLimited: grpc.StatusCode.RESOURCE_EXHAUSTED,
}
GRPC_TO_DOMAIN = {code: error for error, code in DOMAIN_TO_GRPC.items()}


def grpc_code_for(error: DomainError) -> grpc.StatusCode:
    for error_type in type(error).__mro__:
        if error_type in DOMAIN_TO_GRPC:
            return DOMAIN_TO_GRPC[error_type]
    return grpc.StatusCode.UNKNOWN


def to_grpc_status(error: DomainError) -> grpc.Status:
    code = grpc_code_for(error)
    details = []
    if error.field_errors:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=name, description=message)
                for name, messages in error.field_errors.items()
                for message in messages
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad_request)
        details.append(packed)
    if isinstance(error, RateLimited):
        retry_info = error_details_pb2.RetryInfo()
        retry_info.retry_delay.FromSeconds(error.retry_after_s)
        packed = any_pb2.Any()
        packed.Pack(retry_info)
        details.append(packed)
    if isinstance(error, Overloaded):
        info = any_pb2.Any()
        info.Pack(error_details_pb2.ErrorInfo(reason=OVERLOADED_REASON, domain=ERROR_DOMAIN))
        details.append(info)
    status = status_pb2.Status(code=code.value[0], message=error.message, details=details)
    return rpc_status.to_status(status)


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], error: DomainError) -> None:
    await context.abort_with_status(to_grpc_status(error))


@dataclass(frozen=True)
class RpcFailure:
    code: grpc.StatusCode
    message: str
    field_errors: FieldErrors = field(default_factory=dict)
    # From a google.rpc.RetryInfo detail (RateLimited); None when the status carried none.
    retry_after_s: int | None = None

    # ErrorInfo reason, when the status carries one (OVERLOADED_REASON).
    reason: str = ""

    @property
    def overloaded(self) -> bool:
        return self.code == grpc.StatusCode.RESOURCE_EXHAUSTED and (
            self.reason == OVERLOADED_REASON
        )


def decode_rpc_error(error: grpc.RpcError) -> RpcFailure:
    """Read code, message and BadRequest field violations from a failed call."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = error.details() if hasattr(error, "details") else str(error)
    field_errors: FieldErrors = {}
    retry_after_s: int | None = None
    reason = ""
    # Pairs at run time (namedtuples from sync calls, tuples from grpc.aio); grpc-stubs types
    # the sync ones as an opaque object.
    trailing = cast(
        "Iterable[tuple[str, str | bytes]] | None",
        error.trailing_metadata() if hasattr(error, "trailing_metadata") else None,
    )
    for key, value in trailing or ():
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        message = status.message or message
        for detail in status.details:
            bad_request = error_details_pb2.BadRequest()
            if detail.Unpack(bad_request):  # False when the detail is another type
                for violation in bad_request.field_violations:
                    field_errors.setdefault(violation.field, []).append(violation.description)
            retry_info = error_details_pb2.RetryInfo()
            if detail.Unpack(retry_info):
                # Whole seconds, rounded up: Retry-After never invites a retry too early.
                delay = retry_info.retry_delay
                retry_after_s = delay.seconds + (1 if delay.nanos > 0 else 0)
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                reason = info.reason
    return RpcFailure(
        code=code,
        message=message or "",
        field_errors=field_errors,
        retry_after_s=retry_after_s,
        reason=reason,
    )


def as_domain_error(error: grpc.RpcError) -> DomainError:
    """A downstream failure as our own domain error, keeping its message and field errors.

    Anything that is not a caller mistake (timeouts, crashes downstream) becomes Unavailable, so
    it surfaces as 503 rather than as the caller's fault.
    """
    failure = decode_rpc_error(error)
    if failure.overloaded:  # a service downstream is at its limit: so is this call
        return Overloaded()
    error_type = GRPC_TO_DOMAIN.get(failure.code, Unavailable)
    # A downstream timeout stays Unavailable to our callers; Overloaded only with its marker.
    if error_type in (Unavailable, Overloaded, DeadlineExceeded):
        return Unavailable()
    if error_type is RateLimited:
        # Only a service's own decision carries RetryInfo; gRPC's RESOURCE_EXHAUSTED (a message
        # too large) is not the caller's rate limit.
        if failure.retry_after_s is None:
            return Unavailable()
        return RateLimited(failure.retry_after_s, failure.message)
    return error_type(failure.message, failure.field_errors)
