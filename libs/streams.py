"""Names and encoding of the Redis streams services publish to: the one place they are defined.

Encoding: each stream entry has one field, `event`, holding the binary-serialised protobuf message
(courseplatform.events.v1), plus `event_id` and `type` so an operator can read them with
`redis-cli XRANGE` without decoding protobuf.
"""

from __future__ import annotations

COURSE_COMPLETED_STREAM = "courseplatform.learning.course_completed.v1"
COURSE_COMPLETED_DLQ = f"{COURSE_COMPLETED_STREAM}.dlq"
COURSE_COMPLETED_TYPE = "courseplatform.events.v1.CourseCompleted"

NOTIFIER_GROUP = "notifier"

FIELD_EVENT = "event"
FIELD_EVENT_ID = "event_id"
FIELD_TYPE = "type"
