"""Timestamps follow the order of events: a completion that waited on another transaction's
lock is stamped after it, not at its own transaction's start (`now()` did that: lesson 2 and
the enrollment could be stamped before lesson 1)."""

from __future__ import annotations

import asyncio
import datetime as dt

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.db import session_factory, transaction
from services.learning import store
from tests.conftest import User, register_and_login
from tests.learning_support import complete, enroll, progress_rows, published_course, query

# Lesson 2 wins its race (both succeed) in about one round in four; 40 rounds make "never"
# vanishingly unlikely.
ROUNDS = 40


def parse(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


async def test_a_transaction_that_waited_stamps_after_the_one_it_waited_for(
    client: httpx.AsyncClient,
    student: User,
    instructor: User,
    engine: AsyncEngine,
    database_url: str,
) -> None:
    """The race, step by step: lesson 2's transaction begins, lesson 1 commits meanwhile,
    then lesson 2 takes the enrollment lock and completes it and the enrollment, exactly as
    ProgressTracker._complete does."""
    course = await published_course(client, instructor, lessons=2)
    enrollment = await enroll(client, student, course.id)
    first, second = await progress_rows(client, student, enrollment["id"])
    async with transaction(session_factory(engine)) as session:
        await session.execute(sa.select(1))  # the transaction has begun: now() is fixed
        await asyncio.sleep(0.05)
        done = await complete(client, student, first["id"])  # commits in another transaction
        assert done.status_code == 200, done.text
        [locked] = await store.lock_enrollments(session, [enrollment["id"]])
        states = (await store.lesson_states(session, [locked.id]))[locked.id]
        assert [state.completed for state in states] == [True, False]
        lesson_two = await store.complete_progress(session, second["id"])
        [completed] = await store.complete_enrollments(session, [locked.id])
    assert lesson_two is not None
    lesson_one_at = parse(done.json()["completed_at"])
    assert lesson_one_at <= lesson_two.completed_at  # type: ignore[operator]
    assert lesson_two.completed_at <= completed.completed_at  # type: ignore[operator]
    [row] = await query(
        database_url,
        "SELECT updated_at, completed_at FROM learning.enrollments WHERE id = %s",
        enrollment["id"],
    )
    assert row["updated_at"] >= lesson_one_at


async def test_lessons_two_and_one_at_once_are_stamped_in_order(
    client: httpx.AsyncClient, instructor: User
) -> None:
    """Over REST, 40 rounds of completing lesson 2 and lesson 1 of a two-lesson course at the
    same moment: whenever both succeed, lesson 1 <= lesson 2 <= the enrollment's completion."""
    student = await register_and_login(client, "Student")
    courses = await asyncio.gather(
        *(published_course(client, instructor, lessons=2) for _ in range(ROUNDS))
    )
    both = 0

    async def complete_later(progress_id: int, delay_s: float) -> httpx.Response:
        await asyncio.sleep(delay_s)
        return await complete(client, student, progress_id)

    for index, course in enumerate(courses):
        enrollment = await enroll(client, student, course.id)
        first, second = await progress_rows(client, student, enrollment["id"])
        # Lesson 2 at the same moment, or a few milliseconds after lesson 1: the offsets sweep
        # the window in which lesson 2 waits on lesson 1's lock (at 0 ms, on a busy machine,
        # lesson 2 may always get there first and be refused).
        two, one = await asyncio.gather(
            complete_later(second["id"], (index % 8) * 0.003),
            complete(client, student, first["id"]),
        )
        assert one.status_code == 200, one.text
        assert two.status_code in (200, 400), two.text
        if two.status_code != 200:
            continue
        both += 1
        detail = await client.get(f"/api/enrollments/{enrollment['id']}/", headers=student.headers)
        lesson_one, lesson_two = (
            parse(one.json()["completed_at"]),
            parse(two.json()["completed_at"]),
        )
        finished = parse(detail.json()["completed_at"])
        assert lesson_one <= lesson_two <= finished, (lesson_one, lesson_two, finished)
    assert both > 0, "lesson 2 never completed together with lesson 1; the race was not run"
