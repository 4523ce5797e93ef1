"""Learning queries against real PostgreSQL: reconciliation keeps rows true to the catalog,
and an enrollment's figures cost the same number of statements whatever its size."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from libs.db import session_factory, transaction
from libs.outbox import NewOutboxEvent
from services.learning import store
from services.learning.domain import CatalogCourse, CatalogLesson, Enrollment, summarize
from services.learning.usecases.reconciliation import reconcile_locked
from tests.sql_support import counting_statements


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


def fresh_id() -> int:
    # Far above any id identity or catalog hands out in a test run, so these rows are ours.
    return random.randint(10**12, 10**15)


def course(course_id: int, lessons: int, first_lesson_id: int | None = None) -> CatalogCourse:
    start = first_lesson_id or fresh_id()
    return CatalogCourse(
        id=course_id,
        title=f"Course {course_id}",
        lessons=tuple(
            CatalogLesson(id=start + n, title=f"Lesson {n + 1}", order=n + 1)
            for n in range(lessons)
        ),
    )


async def enrolled(
    sessions: async_sessionmaker[AsyncSession], student_id: int, catalog_course: CatalogCourse
) -> Enrollment:
    async with transaction(sessions) as session:
        row = await store.insert_enrollment(
            session,
            student_id=student_id,
            student_name="Store Test",
            course_id=catalog_course.id,
            course_title=catalog_course.title,
        )
        assert row is not None
        await store.reconcile(session, {row.id: catalog_course.lessons})
    return row


async def figures(
    sessions: async_sessionmaker[AsyncSession],
    enrollments: Sequence[Enrollment],
    courses: dict[int, CatalogCourse],
) -> dict[int, Any]:
    """What a read of these enrollments runs: lock, reconcile, load the lessons that count."""
    async with transaction(sessions) as session:
        locked = await store.lock_enrollments(session, [e.id for e in enrollments])
        await reconcile_locked(session, locked, courses)
        states = await store.lesson_states(session, [e.id for e in locked])
    return {key: summarize(value) for key, value in states.items()}


async def test_figures_cost_the_same_statements_whatever_the_size(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    counts = []
    for enrollments, lessons in ((1, 2), (1, 80), (12, 40)):
        student = fresh_id()
        courses = {}
        rows = []
        for _ in range(enrollments):
            catalog_course = course(fresh_id(), lessons)
            courses[catalog_course.id] = catalog_course
            rows.append(await enrolled(sessions, student, catalog_course))
        # The catalog changed since: one lesson more, one less, in every course.
        changed = {
            key: CatalogCourse(
                id=value.id,
                title=value.title + " (renamed)",
                lessons=(*value.lessons[1:], CatalogLesson(id=fresh_id(), title="New", order=999)),
            )
            for key, value in courses.items()
        }
        with counting_statements(engine) as counter:
            result = await figures(sessions, rows, changed)
        counts.append(counter.count)
        assert all(summary.total_lessons == lessons for summary in result.values())
    assert counts[0] == counts[1] == counts[2], counts


async def test_reconcile_adds_removes_revives_and_reorders(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    original = course(fresh_id(), 3)
    row = await enrolled(sessions, fresh_id(), original)
    first, second, third = original.lessons
    async with transaction(sessions) as session:
        states = (await store.lesson_states(session, [row.id]))[row.id]
        await store.complete_progress(session, states[0].progress_id)

    added = CatalogLesson(id=fresh_id(), title="Added", order=4)
    moved = CatalogLesson(id=third.id, title="Third, renamed", order=0)
    now = CatalogCourse(id=original.id, title=original.title, lessons=(first, moved, added))
    await figures(sessions, [row], {now.id: now})
    async with sessions() as session:
        states = (await store.lesson_states(session, [row.id]))[row.id]
    assert [(s.lesson_id, s.title, s.order) for s in states] == [
        (third.id, "Third, renamed", 0),
        (first.id, "Lesson 1", 1),
        (added.id, "Added", 4),
    ]
    assert [s.completed for s in states] == [False, True, False]

    # The deleted lesson comes back (e.g. a catalog answer that raced a delete): same row.
    await figures(sessions, [row], {original.id: original})
    async with sessions() as session:
        states = (await store.lesson_states(session, [row.id]))[row.id]
    assert [s.lesson_id for s in states] == [first.id, second.id, third.id]
    assert states[0].completed is True


async def test_an_enrollment_completes_once_and_its_event_is_unique(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    row = await enrolled(sessions, fresh_id(), course(fresh_id(), 1))
    async with transaction(sessions) as session:
        assert [e.id for e in await store.complete_enrollments(session, [row.id])] == [row.id]
    async with transaction(sessions) as session:
        assert await store.complete_enrollments(session, [row.id]) == []

    def outbox_event() -> store.NewOutboxEvent:
        return NewOutboxEvent(
            event_id=uuid.uuid4(),
            dedup_key=f"test:store:{row.id}",
            stream="test.learning.store",
            event_type="test.Event",
            payload=b"x",
        )

    async with transaction(sessions) as session:
        await store.outbox.insert(session, [outbox_event()])
    with pytest.raises(IntegrityError):
        async with transaction(sessions) as session:
            await store.outbox.insert(session, [outbox_event()])


async def test_one_enrollment_per_student_and_course(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    catalog_course = course(fresh_id(), 1)
    student = fresh_id()
    await enrolled(sessions, student, catalog_course)
    async with transaction(sessions) as session:
        again = await store.insert_enrollment(
            session,
            student_id=student,
            student_name="Store Test",
            course_id=catalog_course.id,
            course_title=catalog_course.title,
        )
    assert again is None
