"""Decoding a course-completed stream entry into what the email needs. Pure: no I/O.

An entry (libs/streams.py) has `event` = binary protobuf `courseplatform.events.v1.CourseCompleted`,
plus `event_id` and `type` in clear text for operators. Anything that does not decode into a
usable event raises `MalformedEvent`; retrying cannot fix it, so the caller dead-letters it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from courseplatform.events.v1 import events_pb2
from google.protobuf.message import DecodeError

from libs.proto_time import from_timestamp
from libs.streams import COURSE_COMPLETED_TYPE, FIELD_EVENT, FIELD_EVENT_ID, decode_entry

# Event ids end up in the Message-ID header and in file names, so only a safe alphabet is
# accepted (UUIDs, as the proto promises, fit it).
EVENT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
MAX_EMAIL_LENGTH = 254


class MalformedEvent(Exception):
    """The entry can never be delivered; the message says why (it goes to the dead-letter stream)."""


@dataclass(frozen=True)
class CourseCompletion:
    event_id: str
    enrollment_id: int
    student_id: int
    student_email: str
    student_full_name: str
    course_id: int
    course_title: str
    completed_at: datetime | None


def decode_completion(fields: Mapping[bytes, bytes]) -> CourseCompletion:
    entry = decode_entry(fields)
    if entry.type is not None and entry.type != COURSE_COMPLETED_TYPE:
        raise MalformedEvent(f"unexpected type {entry.type!r}, expected {COURSE_COMPLETED_TYPE!r}")
    payload = entry.event
    if payload is None:
        raise MalformedEvent(f"entry has no {FIELD_EVENT!r} field")
    event = events_pb2.CourseCompleted()
    try:
        event.ParseFromString(payload)
    except DecodeError as exc:
        raise MalformedEvent(f"{FIELD_EVENT!r} is not a CourseCompleted protobuf: {exc}") from exc

    if not EVENT_ID_PATTERN.fullmatch(event.event_id):
        raise MalformedEvent(f"event_id {event.event_id!r} is missing or not a safe identifier")
    clear_id = entry.event_id
    if clear_id is not None and clear_id != event.event_id:
        raise MalformedEvent(
            f"{FIELD_EVENT_ID!r} field {clear_id!r} differs from the event's {event.event_id!r}"
        )
    email = event.student_email.strip()
    if not plausible_address(email):
        raise MalformedEvent(f"student_email {event.student_email!r} is not an email address")
    full_name = " ".join(event.student_full_name.split())
    if not full_name:
        raise MalformedEvent("student_full_name is empty")
    title = " ".join(event.course_title.split())
    if not title:
        raise MalformedEvent("course_title is empty")
    return CourseCompletion(
        event_id=event.event_id,
        enrollment_id=event.enrollment_id,
        student_id=event.student_id,
        student_email=email,
        student_full_name=full_name,
        course_id=event.course_id,
        course_title=title,
        completed_at=from_timestamp(event.completed_at) if event.HasField("completed_at") else None,
    )


def plausible_address(address: str) -> bool:
    # Identity validated the address at registration; this only refuses what cannot be an
    # envelope recipient (and header injection), without second-guessing its rules.
    if not address or len(address) > MAX_EMAIL_LENGTH or any(c.isspace() for c in address):
        return False
    local, at, domain = address.rpartition("@")
    return bool(at and local and domain and "@" not in domain and not domain.startswith("."))
