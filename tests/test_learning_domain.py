"""The learning rules on their own, without a server: order, percentages, one-way completion."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from courseplatform.events.v1 import events_pb2

from libs import streams
from libs.claims import Claims
from libs.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from libs.outbox import OutboxRow
from libs.outbox_relay import stream_entry
from libs.paging import page_request
from services.learning.domain import (
    CatalogCourse,
    CatalogLesson,
    Enrollment,
    LessonState,
    after_completing,
    check_can_complete,
    check_completed_change,
    completion_percentage,
    first_open_before,
    is_reconciled,
    require_course_id,
    require_id,
    require_student,
    summarize,
)
from services.learning.events import course_completed

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 27, 10, 15, tzinfo=UTC)


def lesson(order: int, completed: bool = False, title: str | None = None) -> LessonState:
    return LessonState(
        progress_id=100 + order,
        lesson_id=10 + order,
        title=title or f"Lesson {order}",
        order=order,
        completed=completed,
    )


def claims(role: str) -> Claims:
    return Claims(
        user_id=7,
        typ="access",
        jti="j",
        expires_at=NOW,
        role=role,
        email="ada@example.com",
        full_name="Ada Lovelace",
    )


@pytest.mark.parametrize(
    ("completed", "total", "expected"),
    [
        (0, 3, 0.0),
        (1, 3, 33.33),
        (2, 3, 66.67),
        (3, 3, 100.0),
        (1, 8, 12.5),
        (1, 6, 16.67),
        (0, 0, 0.0),
        # Never outside 0..100, whatever the counts say.
        (5, 3, 100.0),
        (-1, 3, 0.0),
    ],
)
def test_completion_percentage(completed: int, total: int, expected: float) -> None:
    assert completion_percentage(completed, total) == expected


def test_summary_counts_and_all_done() -> None:
    summary = summarize([lesson(1, True), lesson(2, True), lesson(3)])
    assert (summary.total_lessons, summary.completed_lessons) == (3, 2)
    assert summary.completion_percentage == 66.67
    assert not summary.all_done
    assert summarize([lesson(1, True)]).all_done
    # No lessons: nothing to finish, so never "done".
    assert not summarize([]).all_done


def test_first_lesson_can_always_be_completed() -> None:
    lessons = [lesson(1), lesson(2), lesson(3)]
    check_can_complete(lessons, lessons[0])


def test_second_before_first_names_the_first_open_lesson() -> None:
    lessons = [lesson(1, title="Intro"), lesson(2), lesson(3)]
    with pytest.raises(FailedPrecondition) as caught:
        check_can_complete(lessons, lessons[2])
    assert caught.value.field_errors == {
        "lesson": ["You must complete lesson 1 (Intro) before completing this lesson."]
    }


def test_blocker_is_the_lowest_open_lesson_before_the_target() -> None:
    lessons = [lesson(1, True), lesson(2), lesson(4), lesson(7)]
    assert first_open_before(lessons, lessons[3]) == lessons[1]
    assert first_open_before(lessons, lessons[1]) is None


def test_gaps_in_order_do_not_matter() -> None:
    # Orders after deletions: 1, 4, 9.
    lessons = [lesson(1, True), lesson(4, True), lesson(9)]
    check_can_complete(lessons, lessons[2])


def test_after_completing_marks_only_the_target() -> None:
    lessons = [lesson(1, True), lesson(2)]
    updated = after_completing(lessons, lessons[1])
    assert [item.completed for item in updated] == [True, True]
    assert summarize(updated).all_done
    assert lessons[1].completed is False  # inputs are not mutated


def test_completion_is_one_way() -> None:
    assert check_completed_change(False, True) is True
    assert check_completed_change(True, True) is False  # a no-op, not an error
    assert check_completed_change(False, False) is False
    with pytest.raises(FailedPrecondition) as caught:
        check_completed_change(True, False)
    assert "completed" in caught.value.field_errors


def test_only_students_learn() -> None:
    require_student(claims("Student"))
    with pytest.raises(PermissionDenied):
        require_student(claims("Instructor"))
    with pytest.raises(PermissionDenied):
        require_student(claims(""))


def test_ids_and_pages() -> None:
    with pytest.raises(InvalidArgument) as caught:
        require_course_id(0)
    assert "course" in caught.value.field_errors
    assert require_course_id(5) == 5
    with pytest.raises(NotFound):
        require_id(-3, "Not found.")
    assert page_request(0, 0).page_size == 20
    assert page_request(3, 10).offset == 20
    with pytest.raises(InvalidArgument):
        page_request(1, 101)
    with pytest.raises(InvalidArgument):
        page_request(-1, 10)


def test_course_completed_event_carries_what_the_mail_needs() -> None:
    enrollment = Enrollment(
        id=42,
        student_id=7,
        student_name="Ada at enrollment",
        course_id=9,
        course_title="Analytical Engines",
        enrolled_at=NOW,
        completed_at=NOW,
        created_at=NOW,
        updated_at=NOW,
    )
    row = course_completed(enrollment, claims("Student"), now=NOW)
    assert row.stream == streams.COURSE_COMPLETED_STREAM
    assert row.dedup_key == "course_completed:enrollment:42"
    event = events_pb2.CourseCompleted.FromString(row.payload)
    assert event.event_id == str(row.event_id)
    assert (event.enrollment_id, event.student_id, event.course_id) == (42, 7, 9)
    assert event.student_email == "ada@example.com"
    assert event.student_full_name == "Ada Lovelace"
    assert event.course_title == "Analytical Engines"
    assert event.completed_at.ToDatetime(tzinfo=UTC) == NOW

    entry = stream_entry(
        OutboxRow(
            id=1,
            event_id=row.event_id,
            stream=row.stream,
            event_type=row.event_type,
            payload=row.payload,
        )
    )
    assert entry[streams.FIELD_EVENT] == row.payload
    assert entry[streams.FIELD_EVENT_ID] == str(row.event_id)
    assert entry[streams.FIELD_TYPE] == streams.COURSE_COMPLETED_TYPE


# In step with the catalog: when a read may answer from the stored rows without reconciling.


def catalog(*lessons: LessonState, title: str = "Course") -> CatalogCourse:
    """The catalog's view of a course whose lessons are exactly these stored ones."""
    return CatalogCourse(
        id=1,
        title=title,
        lessons=tuple(CatalogLesson(id=s.lesson_id, title=s.title, order=s.order) for s in lessons),
    )


def test_stored_rows_matching_the_catalog_are_reconciled() -> None:
    stored = [lesson(1, completed=True), lesson(2)]
    assert is_reconciled(catalog(*stored), "Course", stored)
    # The catalog's lesson order in its answer does not matter, only ids, titles and orders.
    assert is_reconciled(catalog(*reversed(stored)), "Course", stored)


def test_an_empty_course_with_no_rows_is_reconciled() -> None:
    assert is_reconciled(catalog(), "Course", [])


@pytest.mark.parametrize(
    "now",
    [
        pytest.param(catalog(lesson(1), lesson(2), lesson(3)), id="lesson added"),
        pytest.param(catalog(lesson(1)), id="lesson deleted"),
        pytest.param(catalog(lesson(1), lesson(3)), id="lesson replaced"),
        pytest.param(catalog(lesson(1), lesson(2, title="Renamed")), id="lesson renamed"),
        pytest.param(
            catalog(lesson(1), LessonState(102, 12, "Lesson 2", 9, False)), id="lesson reordered"
        ),
        pytest.param(catalog(lesson(1), lesson(2), title="Renamed"), id="course renamed"),
        pytest.param(catalog(), id="every lesson deleted"),
    ],
)
def test_any_difference_from_the_catalog_is_not_reconciled(now: CatalogCourse) -> None:
    assert not is_reconciled(now, "Course", [lesson(1, completed=True), lesson(2)])


def test_an_open_enrollment_with_every_lesson_done_is_due_for_completion() -> None:
    # E.g. its last open lesson was deleted: the reconciliation must complete it.
    stored = [lesson(1, completed=True), lesson(2, completed=True)]
    assert not is_reconciled(catalog(*stored), "Course", stored)
