"""Names and encoding of the Redis streams services publish to: the one place they are defined.

Encoding: each stream entry has one field, `event`, holding the binary-serialised protobuf message
(courseplatform.events.v1), plus `event_id` and `type` so an operator can read them with
`redis-cli XRANGE` without decoding protobuf.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from redis.typing import EncodableT, FieldT

COURSE_COMPLETED_STREAM = "courseplatform.learning.course_completed.v1"
COURSE_COMPLETED_DLQ = f"{COURSE_COMPLETED_STREAM}.dlq"
COURSE_COMPLETED_TYPE = "courseplatform.events.v1.CourseCompleted"

# Catalog: one CourseChanged per committed change of a course or its lessons.
COURSE_CHANGED_STREAM = "courseplatform.catalog.course_changed.v1"
COURSE_CHANGED_TYPE = "courseplatform.events.v1.CourseChanged"

# Identity: one PasswordResetRequested per reset mail to send. Entries carry a live reset code
# (a secret until it expires, PASSWORD_RESET_TTL_S): docs/identity.md "Password reset".
PASSWORD_RESET_STREAM = "courseplatform.identity.password_reset_requested.v1"
PASSWORD_RESET_DLQ = f"{PASSWORD_RESET_STREAM}.dlq"
PASSWORD_RESET_TYPE = "courseplatform.events.v1.PasswordResetRequested"

NOTIFIER_GROUP = "notifier"

FIELD_EVENT = "event"
FIELD_EVENT_ID = "event_id"
FIELD_TYPE = "type"
# W3C trace context of the publish (libs/tracing.py); absent when tracing is off.
FIELD_TRACEPARENT = "traceparent"


@dataclass(frozen=True)
class StreamEntry:
    """An entry as read back; a field the entry lacks is None (the consumer decides if it may)."""

    event: bytes | None
    event_id: str | None
    type: str | None
    traceparent: str | None = None


def encode_entry(
    event: bytes, event_id: str, event_type: str, traceparent: str | None = None
) -> dict[FieldT, EncodableT]:
    """The fields XADD writes for one event."""
    fields: dict[FieldT, EncodableT] = {
        FIELD_EVENT: event,
        FIELD_EVENT_ID: event_id,
        FIELD_TYPE: event_type,
    }
    if traceparent:
        fields[FIELD_TRACEPARENT] = traceparent
    return fields


def decode_entry(fields: Mapping[bytes, bytes]) -> StreamEntry:
    """The fields as XREAD answers them (bytes, no decode_responses). The text fields are decoded
    leniently so even a malformed entry can be logged and dead-lettered by its id."""

    def text(name: str) -> str | None:
        raw = fields.get(name.encode())
        return raw.decode("utf-8", errors="replace") if raw is not None else None

    return StreamEntry(
        event=fields.get(FIELD_EVENT.encode()),
        event_id=text(FIELD_EVENT_ID),
        type=text(FIELD_TYPE),
        traceparent=text(FIELD_TRACEPARENT),
    )


# Identity: one TokensRevoked per logout, refresh-family revocation, deactivation or password
# change; every token verifier follows it (libs/revocations.py).
TOKENS_REVOKED_STREAM = "courseplatform.identity.tokens_revoked.v1"
TOKENS_REVOKED_TYPE = "courseplatform.events.v1.TokensRevoked"
