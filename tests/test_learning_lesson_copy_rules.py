"""When learning may answer from its copy of a course's lessons (domain.copy_is_trusted), and what
its reader takes from CourseChanged entries (course_changes.announced_versions); no servers."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from courseplatform.events.v1 import events_pb2

from libs import streams
from services.learning.course_changes import announced_versions
from services.learning.domain import CatalogCourse, CatalogLesson, LessonCopy, copy_is_trusted

pytestmark = pytest.mark.unit

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
COURSE = CatalogCourse(id=7, title="C", lessons=(CatalogLesson(1, "L1", 1),), version=3)
FRESH = LessonCopy(
    course_id=7,
    version=3,
    latest_version=3,
    course=COURSE,
    gone=False,
    checked_at=START + timedelta(seconds=1),
)
NOW = START + timedelta(seconds=10)


def trusted(copy: LessonCopy, since: datetime | None = START, now: datetime = NOW) -> bool:
    return copy_is_trusted(copy, events_seen_since=since, now=now, max_age_s=300)


def test_a_confirmed_copy_nothing_overtook_is_trusted() -> None:
    assert trusted(FRESH)
    # Newer than the latest event learning saw (the event is still on its way): still current.
    assert trusted(replace(FRESH, latest_version=2))


def test_an_event_with_a_higher_version_makes_the_copy_stale() -> None:
    assert not trusted(replace(FRESH, latest_version=4))
    # A gap (events 4 and 5 missed, 6 arrives) is just a higher version.
    assert not trusted(replace(FRESH, latest_version=6))


def test_nothing_is_trusted_while_the_reader_is_not_following_the_stream() -> None:
    assert not trusted(FRESH, since=None)


def test_a_copy_confirmed_before_the_reader_started_is_not_trusted() -> None:
    # Events between the confirmation and the reader's start may have been missed.
    assert not trusted(FRESH, since=FRESH.checked_at + timedelta(microseconds=1))
    assert trusted(FRESH, since=FRESH.checked_at)


def test_an_old_copy_is_confirmed_again() -> None:
    assert not trusted(FRESH, now=FRESH.checked_at + timedelta(seconds=301))


def test_a_missing_copy_or_one_never_confirmed_is_not_trusted() -> None:
    stub = LessonCopy(7, version=0, latest_version=3, course=None, gone=False, checked_at=None)
    assert not trusted(stub)
    assert not trusted(replace(stub, latest_version=0, checked_at=FRESH.checked_at))


def test_a_gone_course_is_trusted_as_gone() -> None:
    gone = replace(FRESH, course=None, gone=True)
    assert trusted(gone)


def entry(course_id: int, version: int) -> tuple[bytes, dict[bytes, bytes]]:
    event = events_pb2.CourseChanged(event_id="e", course_id=course_id, version=version)
    fields = streams.encode_entry(event.SerializeToString(), "e", streams.COURSE_CHANGED_TYPE)
    return b"1-0", {
        str(k).encode(): v if isinstance(v, bytes) else str(v).encode() for k, v in fields.items()
    }


def test_the_reader_keeps_the_highest_version_per_course_and_skips_malformed_entries() -> None:
    entries = [
        entry(1, 2),
        entry(2, 5),
        entry(1, 4),
        entry(1, 3),  # out of order (several relays): the highest wins
        (b"2-0", {b"event": b"\xff\xff", b"type": streams.COURSE_CHANGED_TYPE.encode()}),
        (b"3-0", {b"event": b"x", b"type": b"something.Else"}),
    ]
    assert announced_versions(entries) == {1: 4, 2: 5}
