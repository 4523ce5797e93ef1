"""The CourseChanged event and the outbox row that carries it to the stream."""

from __future__ import annotations

import uuid

from courseplatform.events.v1 import events_pb2

from libs import streams
from libs.outbox import NewOutboxEvent
from libs.proto_time import to_timestamp
from services.catalog.domain import CourseChange


def course_changed(change: CourseChange) -> NewOutboxEvent:
    event_id = uuid.uuid4()
    event = events_pb2.CourseChanged(
        event_id=str(event_id),
        course_id=change.course_id,
        version=change.version,
        changed_at=to_timestamp(change.changed_at),
    )
    return NewOutboxEvent(
        event_id=event_id,
        # One event per version of a course: the unique key makes a second one impossible.
        dedup_key=f"course_changed:course:{change.course_id}:version:{change.version}",
        stream=streams.COURSE_CHANGED_STREAM,
        event_type=streams.COURSE_CHANGED_TYPE,
        payload=event.SerializeToString(),
    )
