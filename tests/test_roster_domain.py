"""Issue #13's rules without a server: orderings, roster filters, the resume point, the
statistics' arithmetic, and the catalog's search query."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from libs.claims import Claims
from libs.errors import InvalidArgument, PermissionDenied
from services.catalog.domain import CourseQuery, clean_course_query
from services.learning.domain import (
    CatalogCourse,
    CatalogLesson,
    Enrollment,
    LessonState,
    NextLesson,
    Ordering,
    course_stats,
    next_lesson,
    require_instructor,
    roster_filter,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def enrollment(completed: bool = False) -> Enrollment:
    return Enrollment(1, 2, "Ada", 3, "Course", NOW, NOW if completed else None, NOW, NOW)


def lesson(progress_id: int, order: int, completed: bool) -> LessonState:
    return LessonState(progress_id, 100 + progress_id, f"Lesson {order}", order, completed)


def test_roster_orderings() -> None:
    assert roster_filter(None, "", "").ordering == Ordering("enrolled_at", True)
    assert roster_filter(None, "", "student_name").ordering == Ordering("student_name", False)
    assert roster_filter(True, " ann ", "-completion_percentage") == roster_filter(
        True, "ann", "-completion_percentage"
    )
    for bad in ("id", "-", "--enrolled_at", "enrolled_at,id", "Student_name"):
        with pytest.raises(InvalidArgument) as caught:
            roster_filter(None, "", bad)
        assert "ordering" in caught.value.field_errors
    with pytest.raises(InvalidArgument) as caught:
        roster_filter(None, "x" * 256, "")
    assert "search" in caught.value.field_errors


def test_only_instructors_see_rosters() -> None:
    expires = NOW
    require_instructor(Claims(1, "access", "j", expires, role="Instructor"))
    with pytest.raises(PermissionDenied):
        require_instructor(Claims(1, "access", "j", expires, role="Student"))


def test_next_lesson_is_the_first_open_one_by_order() -> None:
    lessons = [lesson(1, 3, False), lesson(2, 1, True), lesson(3, 2, False)]
    assert next_lesson(enrollment(), lessons) == NextLesson(3, 103, "Lesson 2", 2)
    assert next_lesson(enrollment(), [lesson(1, 1, True)]) is None
    assert next_lesson(enrollment(completed=True), lessons) is None
    assert next_lesson(enrollment(), []) is None


def test_statistics_arithmetic() -> None:
    course = CatalogCourse(7, "C", (CatalogLesson(11, "B", 2), CatalogLesson(10, "A", 1)))
    # 3 active: one completed (100%), two open with 1 and 0 of the 2 lessons (50%, 0%).
    stats = course_stats(
        course, enrollments=3, completed=1, open_completions=1, completed_by_lesson={10: 2, 11: 1}
    )
    assert (stats.enrollments, stats.completed, stats.in_progress) == (3, 1, 2)
    assert stats.completion_rate == 33.33
    assert stats.average_completion_percentage == 50.0
    assert [(x.lesson_id, x.order, x.completed) for x in stats.lessons] == [(10, 1, 2), (11, 2, 1)]
    none = course_stats(
        course, enrollments=0, completed=0, open_completions=0, completed_by_lesson={}
    )
    assert (none.completion_rate, none.average_completion_percentage) == (0.0, 0.0)
    assert [x.completed for x in none.lessons] == [0, 0]
    # Half-up at the second decimal: 2 of 3 -> 66.67.
    rate = course_stats(
        CatalogCourse(7, "C", ()), enrollments=3, completed=2, open_completions=0,
        completed_by_lesson={},
    )  # fmt: skip
    assert rate.completion_rate == 66.67
    assert rate.average_completion_percentage == float(Decimal("66.67"))


def test_course_query() -> None:
    assert clean_course_query("", "", 0) == CourseQuery()
    assert clean_course_query(" cook ", "-title", 5) == CourseQuery("cook", "title", True, 5)
    assert clean_course_query("", "code", 0) == CourseQuery("", "code", False, None)
    for search, ordering, instructor, field in (
        ("", "relevance", 0, "ordering"),
        ("", "id", 0, "ordering"),
        ("x" * 201, "", 0, "search"),
        ("a\x00b", "", 0, "search"),
        ("", "", -1, "instructor"),
    ):
        with pytest.raises(InvalidArgument) as caught:
            clean_course_query(search, ordering, instructor)
        assert field in caught.value.field_errors
