"""Domain errors: what business rules raise, free of any transport.

The gRPC layer turns them into status codes (libs/grpc_errors.py); the gateway turns status codes
into HTTP answers (gateway/errors.py). Field problems name the field; `NON_FIELD` is the key for
rules that span several fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

NON_FIELD = "non_field_errors"
VALIDATION_MESSAGE = "Validation error"

FieldErrors = dict[str, list[str]]


class DomainError(Exception):
    """Base class; `field_errors` maps a field name to its messages."""

    default_message = "Request failed"

    def __init__(
        self, message: str | None = None, field_errors: Mapping[str, Sequence[str]] | None = None
    ) -> None:
        self.field_errors: FieldErrors = {k: list(v) for k, v in (field_errors or {}).items()}
        self.message = message or (
            VALIDATION_MESSAGE if self.field_errors else self.default_message
        )
        super().__init__(self.message)

    @classmethod
    def on_field(cls, field: str, message: str) -> DomainError:
        return cls(VALIDATION_MESSAGE, {field: [message]})


class InvalidArgument(DomainError):
    """The request itself is malformed (bad field values)."""

    default_message = VALIDATION_MESSAGE


class FailedPrecondition(DomainError):
    """The request is well formed but the current state forbids it (a business rule)."""

    default_message = "The request cannot be carried out in the current state"


class NotFound(DomainError):
    default_message = "Not found."


class PermissionDenied(DomainError):
    default_message = "You do not have permission to perform this action."


class Unauthenticated(DomainError):
    default_message = "Authentication credentials were not provided or are invalid."


class Unavailable(DomainError):
    default_message = "A backend service is unavailable."


class RateLimited(DomainError):
    """Too many attempts: the caller may try again after `retry_after_s` whole seconds."""

    default_message = "Too many failed attempts. Try again later."

    def __init__(self, retry_after_s: int, message: str | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, retry_after_s)


class Overloaded(DomainError):
    """Refused at once because the service is at its concurrency limit (libs/concurrency_limit.py):
    RESOURCE_EXHAUSTED marked OVERLOADED, 503 + Retry-After at the gateway. Not a caller's fault,
    and distinct from a per-caller rate limit (429)."""

    default_message = "The service is overloaded; retry shortly."


class DeadlineExceeded(DomainError):
    """The caller's deadline passed (libs/deadlines.py): the work was not done or was stopped."""

    default_message = "A backend service did not answer in time."


class FieldErrorCollector:
    """Collects every field problem of a request so the caller sees them all at once."""

    def __init__(self) -> None:
        self.errors: FieldErrors = {}

    def add(self, field: str, message: str) -> None:
        self.errors.setdefault(field, []).append(message)

    def raise_if_any(self, error_type: type[DomainError] = InvalidArgument) -> None:
        if self.errors:
            raise error_type(VALIDATION_MESSAGE, self.errors)
