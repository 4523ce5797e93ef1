"""Learning's own copy of each course's lessons (services/learning/usecases/lesson_copies.py and
course_changes.py), against a real catalog and learning server, real PostgreSQL and a real Redis.

Each test runs its own catalog and learning servers on a database of their own and a Redis it
can stop (as tests/test_outbox.py does: the suite's relays would otherwise publish this
database's events elsewhere). Calls reaching the catalog are counted at the catalog server.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from courseplatform.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from courseplatform.learning.v1 import learning_pb2, learning_pb2_grpc
from google.protobuf.field_mask_pb2 import FieldMask

from libs import migrations
from libs.embedded import EmbeddedRedis, drop_database, ensure_database, free_port
from libs.settings import Settings, to_sqlalchemy_url
from services.catalog.server import build_server as build_catalog
from services.learning.server import build_server as build_learning
from tests.conftest import User
from tests.learning_support import eventually, learning_caught_up, query

CATALOG = "/courseplatform.catalog.v1.CatalogService/"


class CallCounter(grpc.aio.ServerInterceptor):
    """Counts the catalog methods called (health and reflection aside)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        if details.method.startswith(CATALOG):
            self.calls[details.method.removeprefix(CATALOG)] += 1
        return await continuation(details)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


@dataclass
class Stack:
    database_url: str
    redis_dir: Path
    redis_port: int
    counter: CallCounter
    instructor: User
    student: User
    catalog: catalog_pb2_grpc.CatalogServiceStub = field(init=False)
    learning: learning_pb2_grpc.LearningServiceStub = field(init=False)
    redis: EmbeddedRedis | None = None

    def start_redis(self) -> None:
        self.redis = EmbeddedRedis(self.redis_dir, port=self.redis_port)

    def stop_redis(self) -> None:
        assert self.redis is not None
        self.redis.stop()
        self.redis = None

    def as_instructor(self) -> tuple[tuple[str, str]]:
        return (("authorization", f"Bearer {self.instructor.access}"),)

    def as_student(self) -> tuple[tuple[str, str]]:
        return (("authorization", f"Bearer {self.student.access}"),)

    # --- catalog, as the instructor ------------------------------------------------------------

    async def course(self, lessons: int) -> int:
        created = await self.catalog.CreateCourse(
            catalog_pb2.CreateCourseRequest(
                title=f"Copy {uuid.uuid4().hex[:6]}", short_description="x"
            ),
            metadata=self.as_instructor(),
        )
        course_id = created.course.id
        if lessons:
            await self.catalog.BulkCreateLessons(
                catalog_pb2.BulkCreateLessonsRequest(
                    course_id=course_id,
                    lessons=[
                        catalog_pb2.NewLesson(title=f"Lesson {n}", content="c", order=n)
                        for n in range(1, lessons + 1)
                    ],
                ),
                metadata=self.as_instructor(),
            )
        await self.catalog.PublishCourse(
            catalog_pb2.PublishCourseRequest(course_id=course_id), metadata=self.as_instructor()
        )
        return course_id

    async def add_lesson(self, course_id: int, order: int) -> int:
        reply = await self.catalog.CreateLesson(
            catalog_pb2.CreateLessonRequest(
                course_id=course_id,
                lesson=catalog_pb2.NewLesson(title=f"Added {order}", content="c", order=order),
            ),
            metadata=self.as_instructor(),
        )
        return reply.lesson.id

    async def move_lesson(self, lesson_id: int, order: int) -> None:
        await self.catalog.UpdateLesson(
            catalog_pb2.UpdateLessonRequest(
                lesson_id=lesson_id, order=order, update_mask=FieldMask(paths=["order"])
            ),
            metadata=self.as_instructor(),
        )

    async def delete_lesson(self, lesson_id: int) -> None:
        await self.catalog.DeleteLesson(
            catalog_pb2.DeleteLessonRequest(lesson_id=lesson_id), metadata=self.as_instructor()
        )

    # --- learning, as the student --------------------------------------------------------------

    async def enroll(self, course_id: int) -> int:
        reply = await self.learning.Enroll(
            learning_pb2.EnrollRequest(course_id=course_id), metadata=self.as_student()
        )
        return reply.enrollment.id

    async def summary(self, enrollment_id: int) -> learning_pb2.EnrollmentSummary:
        reply = await self.learning.GetEnrollment(
            learning_pb2.GetEnrollmentRequest(enrollment_id=enrollment_id),
            metadata=self.as_student(),
        )
        return reply.summary

    async def progress(self, enrollment_id: int = 0) -> list[learning_pb2.Progress]:
        reply = await self.learning.ListProgress(
            learning_pb2.ListProgressRequest(enrollment_id=enrollment_id, page_size=100),
            metadata=self.as_student(),
        )
        return list(reply.progress)

    async def complete(self, progress_id: int) -> learning_pb2.CompleteLessonResponse:
        return await self.learning.CompleteLesson(
            learning_pb2.CompleteLessonRequest(progress_id=progress_id),
            metadata=self.as_student(),
        )

    async def catalog_calls(self, read: Callable[[], Awaitable[Any]]) -> int:
        """How many catalog calls `read` caused."""
        before = self.counter.total
        await read()
        return self.counter.total - before

    async def reads_from_the_copy(self, enrollment_id: int) -> None:
        """Wait until the copy of the enrollment's course is trusted (the reader is following the
        stream and the catalog confirmed the copy since): a read then makes no catalog call."""

        async def no_call() -> bool:
            return await self.catalog_calls(lambda: self.summary(enrollment_id)) == 0

        await eventually(no_call, "reads answered from the copy")

    async def learning_saw(self, course_id: int) -> None:
        await learning_caught_up(self.database_url, course_id)


@pytest.fixture
def own_database(admin_database_url: str) -> Iterator[str]:
    name = f"cp_copy_{uuid.uuid4().hex[:10]}"
    url = ensure_database(admin_database_url, name)
    migrations.upgrade(url, "catalog")
    migrations.upgrade(url, "learning")
    yield url
    drop_database(admin_database_url, name)


@pytest.fixture
async def stack(
    settings: Settings, own_database: str, instructor: User, student: User, tmp_path: Path
) -> AsyncIterator[Stack]:
    redis_port = free_port()
    stack = Stack(own_database, tmp_path / "redis", redis_port, CallCounter(), instructor, student)
    stack.start_redis()
    own = settings.model_copy(
        update={
            "database_url": to_sqlalchemy_url(own_database),
            "redis_url": f"redis://127.0.0.1:{redis_port}/0",
            "outbox_poll_interval_s": 0.1,
            "db_pool_size": 3,
            "db_max_overflow": 3,
        }
    )
    catalog = build_catalog(own, port=0)
    catalog.add_interceptor(stack.counter)
    catalog_port = await catalog.start()
    learning = build_learning(
        own.model_copy(update={"catalog_target": f"127.0.0.1:{catalog_port}"}), port=0
    )
    learning_port = await learning.start()
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{catalog_port}") as catalog_channel,
        grpc.aio.insecure_channel(f"127.0.0.1:{learning_port}") as learning_channel,
    ):
        stack.catalog = catalog_pb2_grpc.CatalogServiceStub(catalog_channel)
        stack.learning = learning_pb2_grpc.LearningServiceStub(learning_channel)
        try:
            yield stack
        finally:
            await learning.stop()
            await catalog.stop()
            if stack.redis is not None:
                stack.stop_redis()


async def enrolled(stack: Stack, lessons: int = 3) -> tuple[int, int, list[int]]:
    """A course of `lessons` lessons the student is enrolled in: (course, enrollment, lesson ids)."""
    course_id = await stack.course(lessons)
    enrollment_id = await stack.enroll(course_id)
    rows = await stack.progress(enrollment_id)
    return course_id, enrollment_id, [row.lesson_id for row in rows]


async def test_fresh_copy_answers_every_read_and_completion_without_the_catalog(
    stack: Stack,
) -> None:
    _, first, _ = await enrolled(stack, lessons=3)
    _, second, _ = await enrolled(stack, lessons=2)
    await stack.reads_from_the_copy(first)
    await stack.reads_from_the_copy(second)

    rows = await stack.progress(first)
    reads: dict[str, Callable[[], Awaitable[Any]]] = {
        "GetEnrollment": lambda: stack.summary(first),
        "ListProgress of one enrollment": lambda: stack.progress(first),
        "ListProgress of all (two open enrollments)": lambda: stack.progress(),
        "GetProgress": lambda: stack.learning.GetProgress(
            learning_pb2.GetProgressRequest(progress_id=rows[0].id), metadata=stack.as_student()
        ),
        "CompleteLesson": lambda: stack.complete(rows[0].id),
        "ListEnrollments": lambda: stack.learning.ListEnrollments(
            learning_pb2.ListEnrollmentsRequest(), metadata=stack.as_student()
        ),
    }
    calls = {name: await stack.catalog_calls(read) for name, read in reads.items()}
    assert calls == dict.fromkeys(reads, 0), calls
    summary = await stack.summary(first)
    assert (summary.total_lessons, summary.completed_lessons) == (3, 1)


async def test_copy_follows_added_moved_and_deleted_lessons(stack: Stack) -> None:
    course_id, enrollment_id, lesson_ids = await enrolled(stack, lessons=3)
    await stack.reads_from_the_copy(enrollment_id)

    started = time.monotonic()
    added = await stack.add_lesson(course_id, order=4)
    await stack.learning_saw(course_id)
    seen_after_s = time.monotonic() - started
    # The event made the copy stale: the next read asks the catalog once and shows the lesson...
    assert await stack.catalog_calls(lambda: stack.summary(enrollment_id)) == 1
    assert (await stack.summary(enrollment_id)).total_lessons == 4
    # ...and from then on the refreshed copy answers.
    assert await stack.catalog_calls(lambda: stack.progress(enrollment_id)) == 0
    assert [row.lesson_id for row in await stack.progress(enrollment_id)] == [*lesson_ids, added]

    await stack.move_lesson(lesson_ids[0], order=9)
    await stack.learning_saw(course_id)
    moved = await stack.progress(enrollment_id)
    assert [row.lesson_id for row in moved] == [*lesson_ids[1:], added, lesson_ids[0]]
    # The moved order is the rule: the old first lesson is now last and cannot be completed yet.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stack.complete(moved[-1].id)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    await stack.delete_lesson(lesson_ids[1])
    await stack.learning_saw(course_id)
    remaining = await stack.progress(enrollment_id)
    assert [row.lesson_id for row in remaining] == [lesson_ids[2], added, lesson_ids[0]]
    summary = await stack.summary(enrollment_id)
    assert (summary.total_lessons, summary.completed_lessons) == (3, 0)
    # Well within a second on an idle machine; the bound here only catches a reader that stalls.
    print(f"learning read the change's event {seen_after_s * 1000:.0f} ms after the write")
    assert seen_after_s < 5, seen_after_s


async def test_a_missed_event_is_noticed_by_the_next_one(stack: Stack) -> None:
    course_id, enrollment_id, lesson_ids = await enrolled(stack, lessons=2)
    await stack.reads_from_the_copy(enrollment_id)

    # A change whose event never arrives (lost from the stream): the catalog's data and version
    # move on, nothing tells learning, so the copy is trusted as it was.
    await query(
        stack.database_url,
        "WITH renamed AS (UPDATE catalog.lessons SET title = 'Renamed quietly' WHERE id = %s"
        " RETURNING course_id) UPDATE catalog.courses SET version = version + 1"
        " WHERE id = (SELECT course_id FROM renamed) RETURNING version",
        lesson_ids[0],
    )
    assert await stack.catalog_calls(lambda: stack.progress(enrollment_id)) == 0
    assert (await stack.progress(enrollment_id))[0].lesson_title == "Lesson 1"

    # The next change's event skips a version: the gap, like any higher version, makes the copy
    # stale, and the refresh brings both changes.
    added = await stack.add_lesson(course_id, order=3)
    await stack.learning_saw(course_id)
    [copy] = await query(
        stack.database_url,
        "SELECT version, latest_version FROM learning.course_lessons WHERE course_id = %s",
        course_id,
    )
    assert copy["latest_version"] > copy["version"] + 1, copy
    rows = await stack.progress(enrollment_id)
    assert [row.lesson_id for row in rows] == [*lesson_ids, added]
    assert rows[0].lesson_title == "Renamed quietly"


async def test_redis_down_means_every_read_asks_the_catalog_and_stays_correct(
    stack: Stack,
) -> None:
    course_id, enrollment_id, lesson_ids = await enrolled(stack, lessons=2)
    await stack.reads_from_the_copy(enrollment_id)

    stack.stop_redis()

    # The reader notices at once (its connection drops) and the copy is no longer trusted.
    async def asks_catalog() -> bool:
        return await stack.catalog_calls(lambda: stack.summary(enrollment_id)) == 1

    await eventually(asks_catalog, "reads to fall back to the catalog")

    # A change now cannot be announced (the catalog's relay cannot reach Redis either)...
    added = await stack.add_lesson(course_id, order=3)
    # ...and still the very next read shows it, as does every read after it.
    for _ in range(3):
        assert await stack.catalog_calls(lambda: stack.progress(enrollment_id)) == 1
        assert [row.lesson_id for row in await stack.progress(enrollment_id)] == [
            *lesson_ids,
            added,
        ]
    rows = await stack.progress(enrollment_id)
    assert (await stack.complete(rows[0].id)).progress.completed

    stack.start_redis()
    # Back: the reader follows the stream again, confirms the copy once, then trusts it.
    await stack.reads_from_the_copy(enrollment_id)
    summary = await stack.summary(enrollment_id)
    assert (summary.total_lessons, summary.completed_lessons) == (3, 1)


async def test_events_of_courses_nobody_copied_cost_no_catalog_call(stack: Stack) -> None:
    """Catalog changes of a course no student is enrolled in are only recorded (one upsert)."""
    course_id = await stack.course(lessons=1)
    before = stack.counter.total
    await stack.add_lesson(course_id, order=2)
    await stack.learning_saw(course_id)
    # Only the instructor's own calls reached the catalog; learning asked nothing.
    assert stack.counter.total - before == 1
    [row] = await query(
        stack.database_url,
        "SELECT lessons, checked_at FROM learning.course_lessons WHERE course_id = %s",
        course_id,
    )
    assert row == {"lessons": None, "checked_at": None}
