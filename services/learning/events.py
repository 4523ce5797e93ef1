"""The CourseCompleted event and the outbox row that carries it to the stream."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from courseplatform.events.v1 import events_pb2

from libs import streams
from libs.claims import Claims
from libs.outbox import NewOutboxEvent
from libs.proto_time import to_timestamp
from services.learning.domain import Enrollment


def course_completed(
    enrollment: Enrollment, student: Claims, now: datetime | None = None
) -> NewOutboxEvent:
    """Everything the completion email needs, so the notifier asks nobody.

    The student's email and name come from the verified token of the student whose request
    completed the course (the service makes no identity call for them).
    """
    assert enrollment.completed_at is not None
    event_id = uuid.uuid4()
    event = events_pb2.CourseCompleted(
        event_id=str(event_id),
        enrollment_id=enrollment.id,
        student_id=enrollment.student_id,
        student_email=student.email,
        student_full_name=student.full_name or enrollment.student_name,
        course_id=enrollment.course_id,
        course_title=enrollment.course_title,
        completed_at=to_timestamp(enrollment.completed_at),
        occurred_at=to_timestamp(now or datetime.now(UTC)),
    )
    return NewOutboxEvent(
        event_id=event_id,
        # An enrollment completes once; the unique key makes a second event impossible.
        dedup_key=f"course_completed:enrollment:{enrollment.id}",
        stream=streams.COURSE_COMPLETED_STREAM,
        event_type=streams.COURSE_COMPLETED_TYPE,
        payload=event.SerializeToString(),
    )
