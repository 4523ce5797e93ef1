"""Reads of enrollments and progress against real PostgreSQL and the real catalog server: when the
stored rows are reconciled with the catalog they cost a few plain SELECTs, whatever the number of
lessons; only a catalog change makes a read run the locked reconciliation, once. With learning's
copy of the lessons fresh, the same reads make no catalog call and one SELECT more (the copy)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from libs import call_context
from libs.claims import Claims
from libs.db import create_engine, session_factory
from libs.embedded import free_port
from libs.settings import Settings
from libs.tokens import verifier_from_settings
from services.learning.catalog_client import CatalogClient, CourseLookups
from services.learning.course_changes import CourseChangeReader
from services.learning.usecases.enrollments import Enrollments
from services.learning.usecases.lesson_copies import LessonCopies
from services.learning.usecases.progress import ProgressTracker
from services.learning.usecases.reconciliation import Reconciler
from tests.conftest import User
from tests.learning_support import complete, enroll, eventually, progress_rows, published_course
from tests.sql_support import counting_statements

# What a reconciled read may send: the rows it answers from and what the check compares.
MAX_SELECTS = 4


class Reads:
    """The learning use cases on their own engine, so the test sees every statement they send."""

    def __init__(self, engine: AsyncEngine, catalog: CourseLookups) -> None:
        sessions = session_factory(engine)
        reconciler = Reconciler(sessions, catalog)
        self.engine = engine
        self.enrollments = Enrollments(sessions, catalog, reconciler)
        self.progress = ProgressTracker(sessions, catalog, reconciler)


@pytest.fixture
async def reads(settings: Settings, services: dict[str, str]) -> AsyncIterator[Reads]:
    engine = create_engine(settings, "test-learning-reads")
    catalog = CatalogClient(services["catalog"], settings.grpc_client_timeout_s)
    yield Reads(engine, catalog)
    await catalog.close()
    await engine.dispose()


@pytest.fixture
async def copy_reads(settings: Settings) -> AsyncIterator[Reads]:
    """The use cases answering from learning's copy, with a real reader of the suite's stream.
    Their catalog is a port nothing listens on: a read that asked it would fail."""
    engine = create_engine(settings, "test-learning-copy-reads")
    sessions = session_factory(engine)
    reader = CourseChangeReader(settings.redis_url, sessions)
    following = asyncio.create_task(reader.run())
    nowhere = CatalogClient(f"127.0.0.1:{free_port()}", settings.grpc_client_timeout_s)
    copies = LessonCopies(
        nowhere, sessions, reader.events_seen_since, max_age_s=settings.lesson_copy_max_age_s
    )

    async def following_the_stream() -> bool:
        return reader.events_seen_since() is not None

    await eventually(following_the_stream, "the reader to follow the stream")
    yield Reads(engine, copies)
    following.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await following
    await copies.close()
    await engine.dispose()


@contextmanager
def acting_as(user: User, settings: Settings) -> Iterator[Claims]:
    """The verified caller, with the token the catalog client forwards (as in a served call)."""
    claims = verifier_from_settings(settings).verify(user.access)
    token = call_context.access_token.set(user.access)
    try:
        yield claims
    finally:
        call_context.access_token.reset(token)


def is_write(statement: str) -> bool:
    sql = statement.lstrip().upper()
    return not sql.startswith("SELECT") or "FOR UPDATE" in sql or "PG_NOTIFY" in sql


async def statements_of(engine: AsyncEngine, read: Callable[[], Awaitable[Any]]) -> list[str]:
    with counting_statements(engine) as counter:
        await read()
    return counter.statements


async def enrolled_with_lessons(
    client: httpx.AsyncClient, student: User, instructor: User, lessons: int
) -> tuple[int, list[dict[str, Any]]]:
    """An enrollment in a new course of `lessons` lessons, its first lesson completed."""
    course = await published_course(client, instructor, lessons=lessons)
    enrollment = await enroll(client, student, course.id)
    rows = await progress_rows(client, student, enrollment["id"])
    assert (await complete(client, student, rows[0]["id"])).status_code == 200
    return enrollment["id"], rows


async def statements_of_each_read(
    reads: Reads, caller: Claims, enrollment_id: int, progress_id: int
) -> dict[str, list[str]]:
    cases: dict[str, Callable[[], Awaitable[Any]]] = {
        "enrollment": lambda: reads.enrollments.get_enrollment(caller, enrollment_id),
        "progress of the enrollment": lambda: reads.progress.list_progress(
            caller, enrollment_id=enrollment_id, page=1, page_size=100
        ),
        "all progress": lambda: reads.progress.list_progress(
            caller, enrollment_id=0, page=1, page_size=100
        ),
        "one progress row": lambda: reads.progress.get_progress(caller, progress_id),
    }
    return {name: await statements_of(reads.engine, read) for name, read in cases.items()}


async def test_reconciled_reads_send_a_few_selects_whatever_the_size(
    client: httpx.AsyncClient,
    student: User,
    instructor: User,
    settings: Settings,
    reads: Reads,
) -> None:
    counts: list[dict[str, int]] = []
    with acting_as(student, settings) as caller:
        for lessons in (2, 40):
            enrollment_id, rows = await enrolled_with_lessons(client, student, instructor, lessons)
            sent = await statements_of_each_read(reads, caller, enrollment_id, rows[-1]["id"])
            for name, statements in sent.items():
                assert statements, name
                assert not [s for s in statements if is_write(s)], (name, statements)
                assert len(statements) <= MAX_SELECTS, (name, statements)
            counts.append({name: len(statements) for name, statements in sent.items()})

            _, summary, _ = await reads.enrollments.get_enrollment(caller, enrollment_id)
            assert (summary.total_lessons, summary.completed_lessons) == (lessons, 1)
    # 2 lessons or 40, one open enrollment or two: the same statements.
    assert counts[0] == counts[1], counts


async def test_a_catalog_change_is_reconciled_by_the_next_read_only(
    client: httpx.AsyncClient,
    student: User,
    instructor: User,
    settings: Settings,
    reads: Reads,
) -> None:
    course = await published_course(client, instructor, lessons=3)
    enrollment_id = (await enroll(client, student, course.id))["id"]
    added = await client.post(
        "/api/lessons/",
        json={"course": course.id, "title": "Added", "content": "New", "order": 4},
        headers=instructor.headers,
    )
    assert added.status_code == 201, added.text
    with acting_as(student, settings) as caller:
        first = await statements_of(
            reads.engine, lambda: reads.enrollments.get_enrollment(caller, enrollment_id)
        )
        # The stale rows were reconciled under the enrollment's lock...
        assert any("FOR UPDATE" in s.upper() for s in first), first
        assert any(s.lstrip().upper().startswith("INSERT") for s in first), first
        # ...so the next read is plain SELECTs again and sees the new lesson.
        second = await statements_of(
            reads.engine, lambda: reads.enrollments.get_enrollment(caller, enrollment_id)
        )
        assert not [s for s in second if is_write(s)], second
        _, summary, _ = await reads.enrollments.get_enrollment(caller, enrollment_id)
    assert summary.total_lessons == 4


async def test_reads_from_a_fresh_copy_ask_no_catalog_and_send_one_select_more(
    client: httpx.AsyncClient,
    student: User,
    instructor: User,
    settings: Settings,
    copy_reads: Reads,
) -> None:
    counts: list[dict[str, int]] = []
    with acting_as(student, settings) as caller:
        for lessons in (2, 40):
            # Enrolling (through the suite's learning server) copies the course's lessons.
            enrollment_id, rows = await enrolled_with_lessons(client, student, instructor, lessons)
            sent = await statements_of_each_read(copy_reads, caller, enrollment_id, rows[-1]["id"])
            for name, statements in sent.items():
                assert not [s for s in statements if is_write(s)], (name, statements)
                assert any("course_lessons" in s for s in statements), (name, statements)
                assert len(statements) <= MAX_SELECTS + 1, (name, statements)
            counts.append({name: len(statements) for name, statements in sent.items()})
            _, summary, _ = await copy_reads.enrollments.get_enrollment(caller, enrollment_id)
            assert (summary.total_lessons, summary.completed_lessons) == (lessons, 1)
    assert counts[0] == counts[1], counts
