"""The PasswordResetRequested event and the outbox row that carries it to the stream."""

from __future__ import annotations

import uuid
from datetime import datetime

from courseplatform.events.v1 import events_pb2

from libs import streams
from libs.outbox import NewOutboxEvent
from libs.proto_time import to_timestamp
from services.identity.domain import User


def password_reset_requested(
    user: User, *, reset_id: int, code: str, expires_at: datetime, requested_at: datetime
) -> NewOutboxEvent:
    event_id = uuid.uuid4()
    event = events_pb2.PasswordResetRequested(
        event_id=str(event_id),
        user_id=user.id,
        email=user.email,
        full_name=user.full_name,
        code=code,
        expires_at=to_timestamp(expires_at),
        requested_at=to_timestamp(requested_at),
    )
    return NewOutboxEvent(
        event_id=event_id,
        # One mail per reset code.
        dedup_key=f"password_reset:{reset_id}",
        stream=streams.PASSWORD_RESET_STREAM,
        event_type=streams.PASSWORD_RESET_TYPE,
        payload=event.SerializeToString(),
    )
