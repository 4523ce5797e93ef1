"""The shared outbox and relay (libs/outbox.py, libs/outbox_relay.py) through both services that
use it: against a Redis that is down, then up, and several relays at once.

These tests run their own learning or catalog server on a database of their own (so the suite's
relays, which publish every row of the suite's database, cannot interfere) and a Redis they
start and stop themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from courseplatform.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from courseplatform.events.v1 import events_pb2
from courseplatform.learning.v1 import learning_pb2, learning_pb2_grpc
from redis.asyncio import Redis

from libs import migrations, streams
from libs.db import create_engine, session_factory, transaction
from libs.embedded import EmbeddedRedis, drop_database, ensure_database, free_port
from libs.outbox import NewOutboxEvent, Outbox
from libs.outbox_relay import OutboxRelay
from libs.settings import Settings, to_sqlalchemy_url
from services.catalog import store as catalog_store
from services.catalog.server import build_server as build_catalog
from services.learning import store as learning_store
from services.learning.server import build_server
from tests.conftest import User
from tests.learning_support import eventually, published_course, query


@pytest.fixture
def own_database(admin_database_url: str) -> Iterator[str]:
    name = f"cp_outbox_{uuid.uuid4().hex[:10]}"
    url = ensure_database(admin_database_url, name)
    migrations.upgrade(url, "learning")
    migrations.upgrade(url, "catalog")
    yield url
    drop_database(admin_database_url, name)


@contextlib.contextmanager
def redis_server(data_dir: Path, port: int) -> Iterator[str]:
    server = EmbeddedRedis(data_dir, port=port)
    try:
        yield server.url()
    finally:
        server.stop()


def redis_down_settings(settings: Settings, own_database: str) -> tuple[Settings, int]:
    """Settings for a server on its own database whose Redis port has nothing listening (yet)."""
    redis_port = free_port()
    own = settings.model_copy(
        update={
            "database_url": to_sqlalchemy_url(own_database),
            "redis_url": f"redis://127.0.0.1:{redis_port}/0",
            "outbox_poll_interval_s": 0.1,
        }
    )
    return own, redis_port


@pytest.fixture
async def own_catalog(settings: Settings, own_database: str) -> AsyncIterator[tuple[str, int]]:
    """A catalog server on its own database whose Redis port has nothing listening (yet)."""
    own, redis_port = redis_down_settings(settings, own_database)
    server = build_catalog(own, port=0)
    port = await server.start()
    yield f"127.0.0.1:{port}", redis_port
    await server.stop()


@pytest.fixture
async def own_learning(
    settings: Settings, services: dict[str, str], own_database: str
) -> AsyncIterator[tuple[str, int]]:
    """A learning server on its own database whose Redis port has nothing listening (yet)."""
    own, redis_port = redis_down_settings(settings, own_database)
    server = build_server(own, port=0)
    port = await server.start()
    yield f"127.0.0.1:{port}", redis_port
    await server.stop()


def stub(target: str) -> tuple[grpc.aio.Channel, learning_pb2_grpc.LearningServiceStub]:
    channel = grpc.aio.insecure_channel(target)
    return channel, learning_pb2_grpc.LearningServiceStub(channel)


async def test_completion_succeeds_while_redis_is_down_and_publishes_once_it_is_back(
    client: httpx.AsyncClient,
    student: User,
    instructor: User,
    own_learning: tuple[str, int],
    own_database: str,
    tmp_path: Path,
) -> None:
    target, redis_port = own_learning
    course = await published_course(client, instructor, lessons=2)
    auth = (("authorization", f"Bearer {student.access}"),)
    channel, learning = stub(target)
    async with channel:
        enrolled = await learning.Enroll(
            learning_pb2.EnrollRequest(course_id=course.id), metadata=auth
        )
        enrollment_id = enrolled.enrollment.id
        listed = await learning.ListProgress(
            learning_pb2.ListProgressRequest(enrollment_id=enrollment_id), metadata=auth
        )
        for row in listed.progress:
            await learning.CompleteLesson(
                learning_pb2.CompleteLessonRequest(progress_id=row.id), metadata=auth
            )
        detail = await learning.GetEnrollment(
            learning_pb2.GetEnrollmentRequest(enrollment_id=enrollment_id), metadata=auth
        )
    assert detail.enrollment.is_completed

    async def failed_attempt() -> list:
        rows = await query(own_database, "SELECT * FROM learning.outbox WHERE attempts > 0")
        return rows

    # The relay tried, failed, and left the row unsent.
    [row] = await eventually(failed_attempt, "a failed publish attempt")
    assert row["published_at"] is None
    assert row["last_error"]

    with redis_server(tmp_path / "redis", redis_port) as url:

        async def published() -> list:
            return await query(
                own_database, "SELECT * FROM learning.outbox WHERE published_at IS NOT NULL"
            )

        [sent] = await eventually(published, "the relay to publish once Redis is back")
        redis = Redis.from_url(url)
        try:
            entries = await redis.xrange(streams.COURSE_COMPLETED_STREAM, "-", "+")
        finally:
            await redis.aclose()

    assert len(entries) == 1
    _, fields = entries[0]
    assert fields[streams.FIELD_EVENT_ID.encode()].decode() == str(sent["event_id"])
    assert fields[streams.FIELD_TYPE.encode()].decode() == streams.COURSE_COMPLETED_TYPE
    event = events_pb2.CourseCompleted.FromString(fields[streams.FIELD_EVENT.encode()])
    assert event.event_id == str(sent["event_id"])
    assert event.enrollment_id == enrollment_id
    assert event.student_id == student.id
    assert event.student_email == student.email
    assert event.student_full_name == student.full_name
    assert event.course_id == course.id
    assert event.course_title == course.title
    assert event.completed_at.ToDatetime().year >= 2024
    assert event.occurred_at.seconds >= event.completed_at.seconds


@pytest.mark.parametrize(
    ("schema", "outbox"),
    [("learning", learning_store.outbox), ("catalog", catalog_store.outbox)],
)
async def test_several_relays_publish_each_row_exactly_once(
    own_database: str, settings: Settings, tmp_path: Path, schema: str, outbox: Outbox
) -> None:
    stream = f"test.outbox.{uuid.uuid4().hex[:8]}"
    port = free_port()
    own = settings.model_copy(update={"database_url": to_sqlalchemy_url(own_database)})
    engine = create_engine(own, "outbox-test")
    sessions = session_factory(engine)
    events = [
        NewOutboxEvent(
            event_id=uuid.uuid4(),
            dedup_key=f"test:{uuid.uuid4().hex}",
            stream=stream,
            event_type="test.Event",
            payload=f"payload {n}".encode(),
        )
        for n in range(300)
    ]
    async with transaction(sessions) as session:
        await outbox.insert(session, events)

    with redis_server(tmp_path / "redis", port) as url:
        relays = [
            OutboxRelay(
                outbox,
                sessions,
                database_url=own.database_url,
                redis_url=url,
                poll_interval_s=0.05,
                batch_size=7,
                stream_maxlen=10_000,
            )
            for _ in range(4)
        ]
        tasks = [asyncio.create_task(relay.run()) for relay in relays]
        try:

            async def all_published() -> bool:
                rows = await query(
                    own_database,
                    f"SELECT count(*) AS n FROM {schema}.outbox WHERE published_at IS NULL",
                )
                return rows[0]["n"] == 0

            await eventually(all_published, "every row to be published")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        redis = Redis.from_url(url)
        try:
            entries = await redis.xrange(stream, "-", "+")
        finally:
            await redis.aclose()
    await engine.dispose()

    ids = [fields[streams.FIELD_EVENT_ID.encode()].decode() for _, fields in entries]
    assert len(ids) == 300
    assert set(ids) == {str(event.event_id) for event in events}
    # Each entry carries its own row's payload.
    payloads = {str(event.event_id): event.payload for event in events}
    assert all(fields[b"event"] == payloads[fields[b"event_id"].decode()] for _, fields in entries)


async def test_catalog_changes_commit_while_redis_is_down_and_publish_once_it_is_back(
    instructor: User, own_catalog: tuple[str, int], own_database: str, tmp_path: Path
) -> None:
    target, redis_port = own_catalog
    auth = (("authorization", f"Bearer {instructor.access}"),)
    async with grpc.aio.insecure_channel(target) as channel:
        catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
        created = await catalog.CreateCourse(
            catalog_pb2.CreateCourseRequest(title="Outage", short_description="Redis is down"),
            metadata=auth,
        )
        course_id = created.course.id
        await catalog.PublishCourse(
            catalog_pb2.PublishCourseRequest(course_id=course_id), metadata=auth
        )

    async def failed_attempts() -> list:
        return await query(
            own_database, "SELECT * FROM catalog.outbox WHERE attempts > 0 ORDER BY id"
        )

    # Both writes answered; the relay tried, failed, and left the rows unsent.
    [first, *_] = await eventually(failed_attempts, "a failed publish attempt")
    assert first["published_at"] is None and first["last_error"]

    with redis_server(tmp_path / "redis", redis_port) as url:

        async def published() -> list | None:
            rows = await query(own_database, "SELECT * FROM catalog.outbox ORDER BY id")
            return rows if all(row["published_at"] for row in rows) else None

        sent = await eventually(published, "the relay to publish once Redis is back")
        redis = Redis.from_url(url)
        try:
            entries = await redis.xrange(streams.COURSE_CHANGED_STREAM, "-", "+")
        finally:
            await redis.aclose()

    assert len(sent) == 2
    assert [fields[streams.FIELD_EVENT_ID.encode()].decode() for _, fields in entries] == [
        str(row["event_id"]) for row in sent
    ]
    changes = [
        events_pb2.CourseChanged.FromString(fields[streams.FIELD_EVENT.encode()])
        for _, fields in entries
    ]
    assert [(c.course_id, c.version) for c in changes] == [(course_id, 1), (course_id, 2)]
    assert all(
        fields[streams.FIELD_TYPE.encode()].decode() == streams.COURSE_CHANGED_TYPE
        for _, fields in entries
    )


async def test_two_catalog_servers_publish_each_change_exactly_once(
    instructor: User, settings: Settings, own_database: str, tmp_path: Path
) -> None:
    """Two catalog replicas on one database, writes spread over both: every change reaches the
    stream once, whichever relay took it."""
    port = free_port()
    with redis_server(tmp_path / "redis", port) as url:
        own = settings.model_copy(
            update={
                "database_url": to_sqlalchemy_url(own_database),
                "redis_url": url,
                "outbox_poll_interval_s": 0.1,
                "outbox_batch_size": 3,
            }
        )
        servers = [build_catalog(own, port=0) for _ in range(2)]
        targets = [f"127.0.0.1:{await server.start()}" for server in servers]
        auth = (("authorization", f"Bearer {instructor.access}"),)
        try:
            channels = [grpc.aio.insecure_channel(target) for target in targets]
            stubs = [catalog_pb2_grpc.CatalogServiceStub(channel) for channel in channels]
            await asyncio.gather(
                *(
                    stubs[n % 2].CreateCourse(
                        catalog_pb2.CreateCourseRequest(title=f"C{n}", short_description="d"),
                        metadata=auth,
                    )
                    for n in range(40)
                )
            )
            for channel in channels:
                await channel.close()

            async def all_published() -> list | None:
                rows = await query(own_database, "SELECT * FROM catalog.outbox")
                return rows if all(row["published_at"] for row in rows) else None

            rows = await eventually(all_published, "both relays to publish every change")
        finally:
            for server in servers:
                await server.stop()
        redis = Redis.from_url(url)
        try:
            entries = await redis.xrange(streams.COURSE_CHANGED_STREAM, "-", "+")
        finally:
            await redis.aclose()

    assert len(rows) == 40
    ids = [fields[streams.FIELD_EVENT_ID.encode()].decode() for _, fields in entries]
    assert sorted(ids) == sorted(str(row["event_id"]) for row in rows)
