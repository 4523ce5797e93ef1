"""Catalog queries against real PostgreSQL: a course list page costs a constant number of SQL
statements, whatever the page size and however many lessons each course has."""

from __future__ import annotations

import random

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from libs.db import session_factory, transaction
from services.catalog import store
from services.catalog.domain import CourseWithLessons, ListScope, NewLesson, course_code
from tests.sql_support import counting_statements

COURSES = 20
LESSONS_PER_COURSE = 30


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


def fresh_instructor_id() -> int:
    # Far above any id identity hands out in a test run, so these rows are ours alone.
    return random.randint(10**12, 10**15)


async def seed(
    sessions: async_sessionmaker[AsyncSession], instructor_id: int, courses: int, lessons: int
) -> list[int]:
    ids = []
    async with transaction(sessions) as session:
        for index in range(courses):
            course = await store.insert_course(
                session,
                code=course_code(await store.next_course_number(session)),
                title=f"Course {index}",
                short_description="seeded",
                instructor_id=instructor_id,
                instructor_name="Seeder",
            )
            ids.append(course.id)
            if lessons:
                # Inserted in reverse so the ordering below is the query's doing.
                await store.insert_lessons(
                    session,
                    course.id,
                    [NewLesson(f"L{n}", "content", n) for n in range(lessons, 0, -1)],
                )
    return ids


async def statements_for_page(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    instructor_id: int,
    page_size: int,
) -> tuple[int, list[CourseWithLessons], int]:
    async with sessions() as session:
        # The connection is checked out before counting starts (no setup queries counted).
        await session.connection()
        with counting_statements(engine) as counter:
            page, total = await store.list_courses(
                session,
                ListScope(instructor_id=instructor_id, published_only=False),
                None,
                offset=0,
                limit=page_size,
            )
        return counter.count, page, total


async def test_course_page_costs_constant_statements(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    many_lessons = fresh_instructor_id()
    few_lessons = fresh_instructor_id()
    await seed(sessions, many_lessons, COURSES, LESSONS_PER_COURSE)
    await seed(sessions, few_lessons, COURSES, 1)

    counts = {}
    for instructor_id, lessons in ((many_lessons, LESSONS_PER_COURSE), (few_lessons, 1)):
        for page_size in (1, 5, 20):
            count, page, total = await statements_for_page(
                engine, sessions, instructor_id, page_size
            )
            counts[(lessons, page_size)] = count
            assert total == COURSES
            assert len(page) == page_size
            for item in page:
                assert [lesson.order for lesson in item.lessons] == list(range(1, lessons + 1))

    # count + page + the page's lessons, whatever the page size or the lessons per course.
    assert set(counts.values()) == {3}, counts


async def test_course_page_holds_every_lesson_newest_course_first(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    instructor_id = fresh_instructor_id()
    ids = await seed(sessions, instructor_id, 3, 4)
    async with sessions() as session:
        page, total = await store.list_courses(
            session,
            ListScope(instructor_id=instructor_id, published_only=False),
            None,
            offset=1,
            limit=2,
        )
    assert total == 3
    assert [item.course.id for item in page] == [ids[1], ids[0]]
    assert all(len(item.lessons) == 4 for item in page)
    assert all(lesson.course_id == item.course.id for item in page for lesson in item.lessons)


async def test_soft_deleted_course_and_lessons_vanish(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    instructor_id = fresh_instructor_id()
    kept, deleted = await seed(sessions, instructor_id, 2, 2)
    async with transaction(sessions) as session:
        await store.soft_delete_course(session, deleted)
    scope = ListScope(instructor_id=instructor_id, published_only=False)
    async with sessions() as session:
        page, total = await store.list_courses(session, scope, None, offset=0, limit=10)
        assert (total, [item.course.id for item in page]) == (1, [kept])
        assert await store.course_by_id(session, deleted) is None
        lessons, count = await store.list_lessons(
            session, scope, course_id=deleted, course_ids=None, offset=0, limit=None
        )
        assert (lessons, count) == ([], 0)


async def test_lesson_order_index_refuses_a_taken_order(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    (course_id,) = await seed(sessions, fresh_instructor_id(), 1, 2)
    with pytest.raises(store.OrderTaken):
        async with transaction(sessions) as session:
            await store.insert_lessons(session, course_id, [NewLesson("again", "c", 2)])


async def test_page_past_the_end_costs_only_the_count(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    instructor_id = fresh_instructor_id()
    await seed(sessions, instructor_id, 2, 1)
    async with sessions() as session:
        await session.connection()
        with counting_statements(engine) as counter:
            page, total = await store.list_courses(
                session,
                ListScope(instructor_id=instructor_id, published_only=False),
                None,
                offset=(2**31 - 2) * 100,  # page 2,147,483,647 of 100: no OFFSET scan
                limit=100,
            )
    assert (page, total) == ([], 2)
    assert counter.count == 1
