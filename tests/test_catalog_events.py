"""Catalog change events: every write of a course or its lessons bumps `courses.version` and writes
one CourseChanged row to `catalog.outbox` in the same transaction; the suite's catalog server
relays them to the Redis stream. Through the real gateway, catalog, PostgreSQL and Redis.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from courseplatform.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from courseplatform.events.v1 import events_pb2
from google.protobuf.field_mask_pb2 import FieldMask
from redis.asyncio import Redis

from libs import streams
from libs.claims import Claims
from libs.db import create_engine, session_factory
from libs.settings import Settings
from services.catalog.domain import NewLesson
from services.catalog.usecases import Catalog
from tests.conftest import User, assert_error_body, register_and_login
from tests.learning_support import eventually, query
from tests.sql_support import counting_statements

ROOT = Path(__file__).resolve().parent.parent


async def course_events(database_url: str, course_id: int) -> list[dict[str, Any]]:
    """The course's outbox rows, oldest first, each with its decoded event under "event"."""
    rows = await query(
        database_url,
        "SELECT * FROM catalog.outbox WHERE dedup_key LIKE %s ORDER BY id",
        f"course_changed:course:{course_id}:%",
    )
    for row in rows:
        row["event"] = events_pb2.CourseChanged.FromString(row["payload"])
    return rows


async def course_version(database_url: str, course_id: int) -> int:
    [row] = await query(
        database_url, "SELECT version FROM catalog.courses WHERE id = %s", course_id
    )
    return row["version"]


async def create_course(client: httpx.AsyncClient, instructor: User) -> int:
    created = await client.post(
        "/api/courses/",
        json={"title": "Versioned", "short_description": "Every change counts."},
        headers=instructor.headers,
    )
    assert created.status_code == 201, created.text
    assert "version" not in created.json()  # the REST representation is unchanged
    return created.json()["id"]


async def test_every_write_path_emits_exactly_one_event_with_the_next_version(
    client: httpx.AsyncClient, instructor: User, database_url: str, redis: Redis
) -> None:
    course_id = await create_course(client, instructor)
    headers = instructor.headers
    course_url = f"/api/courses/{course_id}/"
    events = await course_events(database_url, course_id)
    assert [(row["event"].course_id, row["event"].version) for row in events] == [(course_id, 1)]

    async def lesson(order: int) -> int:
        response = await client.post(
            "/api/lessons/",
            json={"course": course_id, "title": f"L{order}", "content": "c", "order": order},
            headers=headers,
        )
        assert response.status_code == 201, response.text
        return response.json()["id"]

    lesson_ids: list[int] = []

    async def bulk() -> httpx.Response:
        return await client.post(
            "/api/lessons/bulk_create/",
            json={
                "course": course_id,
                "lessons": [{"title": f"B{n}", "content": "c", "order": n} for n in (2, 3)],
            },
            headers=headers,
        )

    writes = [
        ("PATCH course", lambda: client.patch(course_url, json={"title": "T2"}, headers=headers)),
        (
            "PUT course",
            lambda: client.put(
                course_url, json={"title": "T3", "short_description": "d3"}, headers=headers
            ),
        ),
        ("create lesson", None),
        ("bulk create", bulk),
        (
            "PATCH lesson",
            lambda: client.patch(
                f"/api/lessons/{lesson_ids[0]}/", json={"title": "L1b"}, headers=headers
            ),
        ),
        (
            "PUT lesson",
            lambda: client.put(
                f"/api/lessons/{lesson_ids[0]}/",
                json={"title": "L1c", "content": "c2", "order": 9},
                headers=headers,
            ),
        ),
        ("delete lesson", lambda: client.delete(f"/api/lessons/{lesson_ids[0]}/", headers=headers)),
        ("publish", lambda: client.post(f"{course_url}publish/", headers=headers)),
        ("delete course", lambda: client.delete(course_url, headers=headers)),
    ]
    for expected_version, (what, write) in enumerate(writes, start=2):
        if write is None:
            lesson_ids.append(await lesson(1))
        else:
            response = await write()
            assert response.status_code in (200, 201, 204), (what, response.text)
        events = await course_events(database_url, course_id)
        assert len(events) == expected_version, what  # exactly one more
        newest = events[-1]["event"]
        assert (newest.course_id, newest.version) == (course_id, expected_version), what
        assert newest.event_id == str(events[-1]["event_id"])
        assert events[-1]["stream"] == streams.COURSE_CHANGED_STREAM
        assert await course_version(database_url, course_id) == expected_version, what

    changed = [row["event"].changed_at.ToDatetime() for row in events]
    assert changed == sorted(changed)

    # The relay publishes each of them, once, on the stream.
    ids = {str(row["event_id"]) for row in events}

    async def published() -> list[dict[str, Any]] | None:
        rows = await course_events(database_url, course_id)
        return rows if all(row["published_at"] for row in rows) else None

    await eventually(published, "the relay to publish every change")
    entries = await redis.xrange(streams.COURSE_CHANGED_STREAM, "-", "+")
    on_stream = [
        fields[streams.FIELD_EVENT_ID.encode()].decode()
        for _, fields in entries
        if fields[streams.FIELD_EVENT_ID.encode()].decode() in ids
    ]
    assert sorted(on_stream) == sorted(ids)
    versions = [
        events_pb2.CourseChanged.FromString(fields[streams.FIELD_EVENT.encode()]).version
        for _, fields in entries
        if fields[streams.FIELD_EVENT_ID.encode()].decode() in ids
    ]
    assert sorted(versions) == list(range(1, len(writes) + 2))


async def test_a_rolled_back_change_emits_nothing(
    client: httpx.AsyncClient, instructor: User, database_url: str
) -> None:
    course_id = await create_course(client, instructor)
    headers = instructor.headers
    bulk = await client.post(
        "/api/lessons/bulk_create/",
        json={
            "course": course_id,
            "lessons": [{"title": f"L{n}", "content": "c", "order": n} for n in (1, 2)],
        },
        headers=headers,
    )
    assert bulk.status_code == 201, bulk.text
    second = sorted(bulk.json(), key=lambda lesson: lesson["order"])[1]["id"]
    before = await course_events(database_url, course_id)
    assert [row["event"].version for row in before] == [1, 2]

    other = await register_and_login(client, "Instructor")
    student = await register_and_login(client, "Student")
    refused = [
        # Order clash with a stored lesson: found after the version bump, so it is rolled back.
        (
            client.post(
                "/api/lessons/bulk_create/",
                json={
                    "course": course_id,
                    "lessons": [{"title": "x", "content": "c", "order": n} for n in (2, 3)],
                },
                headers=headers,
            ),
            400,
        ),
        # Repeated order inside the request: refused by validation.
        (
            client.post(
                "/api/lessons/bulk_create/",
                json={
                    "course": course_id,
                    "lessons": [{"title": "x", "content": "c", "order": 5} for _ in (1, 2)],
                },
                headers=headers,
            ),
            400,
        ),
        # Taken order on a single create and on an update: the unique index refuses the row
        # after the bump.
        (
            client.post(
                "/api/lessons/",
                json={"course": course_id, "title": "x", "content": "c", "order": 1},
                headers=headers,
            ),
            400,
        ),
        (client.patch(f"/api/lessons/{second}/", json={"order": 1}, headers=headers), 400),
        (client.patch(f"/api/courses/{course_id}/", json={"title": ""}, headers=headers), 400),
        (
            client.patch(f"/api/courses/{course_id}/", json={"title": "x"}, headers=other.headers),
            404,
        ),
        (
            client.post(
                "/api/lessons/",
                json={"course": course_id, "title": "x", "content": "c", "order": 7},
                headers=other.headers,
            ),
            404,  # another instructor's draft is hidden
        ),
        (client.delete(f"/api/lessons/{second}/", headers=student.headers), 403),
    ]
    for request, status in refused:
        assert_error_body(await request, status)
    # An update that changes nothing is not a change.
    unchanged = await client.patch(f"/api/courses/{course_id}/", json={}, headers=headers)
    assert unchanged.status_code == 200, unchanged.text

    # The same rows (by id and version): the relay may have marked them published meanwhile.
    after = await course_events(database_url, course_id)
    assert [(row["id"], row["event"].version) for row in after] == [
        (row["id"], row["event"].version) for row in before
    ]
    assert await course_version(database_url, course_id) == 2

    published = await client.post(f"/api/courses/{course_id}/publish/", headers=headers)
    assert published.status_code == 200
    assert_error_body(await client.post(f"/api/courses/{course_id}/publish/", headers=headers), 400)
    # Published, the course is visible to others, who still may not change it.
    assert_error_body(
        await client.patch(
            f"/api/courses/{course_id}/", json={"title": "x"}, headers=other.headers
        ),
        403,
    )
    assert_error_body(await client.delete(f"/api/lessons/{second}/", headers=other.headers), 403)
    assert [row["event"].version for row in await course_events(database_url, course_id)] == [
        1,
        2,
        3,
    ]


async def test_versions_strictly_increase_under_concurrent_changes(
    client: httpx.AsyncClient, instructor: User, database_url: str
) -> None:
    """Lesson creates and course updates of one course at once: each change gets its own
    version, none is skipped or repeated, and outbox order is version order."""
    course_id = await create_course(client, instructor)
    headers = instructor.headers
    lessons = [
        client.post(
            "/api/lessons/",
            json={"course": course_id, "title": f"L{n}", "content": "c", "order": n},
            headers=headers,
        )
        for n in range(1, 16)
    ]
    # Two requests for one order: exactly one wins, the loser's bump is rolled back.
    clash = [
        client.post(
            "/api/lessons/",
            json={"course": course_id, "title": "clash", "content": "c", "order": 99},
            headers=headers,
        )
        for _ in range(2)
    ]
    updates = [
        client.patch(f"/api/courses/{course_id}/", json={"title": f"T{n}"}, headers=headers)
        for n in range(5)
    ]
    answers = await asyncio.gather(*lessons, *clash, *updates)
    statuses = sorted(response.status_code for response in answers)
    assert statuses.count(400) == 1, [r.text for r in answers if r.status_code >= 300]
    assert all(status in (200, 201) for status in statuses if status != 400)

    events = await course_events(database_url, course_id)
    changes = 1 + 15 + 1 + 5
    assert [row["event"].version for row in events] == list(range(1, changes + 1))
    assert len({row["dedup_key"] for row in events}) == changes
    assert await course_version(database_url, course_id) == changes


@pytest.fixture
async def stub(services: dict[str, str]) -> AsyncIterator[catalog_pb2_grpc.CatalogServiceStub]:
    async with grpc.aio.insecure_channel(services["catalog"]) as channel:
        yield catalog_pb2_grpc.CatalogServiceStub(channel)


async def test_grpc_course_carries_its_version(
    stub: catalog_pb2_grpc.CatalogServiceStub, instructor: User
) -> None:
    auth = (("authorization", f"Bearer {instructor.access}"),)
    created = await stub.CreateCourse(
        catalog_pb2.CreateCourseRequest(title="v", short_description="d"), metadata=auth
    )
    assert created.course.version == 1
    updated = await stub.UpdateCourse(
        catalog_pb2.UpdateCourseRequest(
            course_id=created.course.id, title="v2", update_mask=FieldMask(paths=["title"])
        ),
        metadata=auth,
    )
    assert updated.course.version == 2
    await stub.CreateLesson(
        catalog_pb2.CreateLessonRequest(
            course_id=created.course.id,
            lesson=catalog_pb2.NewLesson(title="l", content="c", order=1),
        ),
        metadata=auth,
    )
    got = await stub.GetCourse(
        catalog_pb2.GetCourseRequest(course_id=created.course.id), metadata=auth
    )
    assert got.course.version == 3


async def test_republish_puts_a_range_of_course_changes_back_on_the_stream(
    client: httpx.AsyncClient,
    instructor: User,
    database_url: str,
    redis: Redis,
    settings: Settings,
) -> None:
    """`python -m services.catalog republish` (the shared libs/outbox_republish.py): the events
    of the range go onto the stream again, same event id and payload."""
    [clock] = await query(database_url, "SELECT clock_timestamp() AS now")
    since = clock["now"]
    course_id = await create_course(client, instructor)

    async def published() -> list[dict[str, Any]] | None:
        rows = await course_events(database_url, course_id)
        return rows if rows and all(row["published_at"] for row in rows) else None

    [row] = await eventually(published, "the relay to publish the creation")
    event_id = str(row["event_id"])

    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
    env["LOG_LEVEL"] = "WARNING"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.catalog",
        "republish",
        "--since",
        since.isoformat(),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    assert f"({streams.COURSE_CHANGED_STREAM}: " in out.decode()

    entries = await redis.xrange(streams.COURSE_CHANGED_STREAM, "-", "+")
    copies = [
        fields
        for _, fields in entries
        if fields[streams.FIELD_EVENT_ID.encode()].decode() == event_id
    ]
    assert len(copies) == 2
    assert copies[0] == copies[1]
    assert copies[0][streams.FIELD_EVENT.encode()] == row["payload"]


async def test_statements_per_write(settings: Settings, services: dict[str, str]) -> None:
    """What the event costs: course writes send one statement more than before (the outbox
    insert, which also NOTIFYs), lesson writes two (the version bump, which is also the course
    lock, and the outbox insert)."""
    engine = create_engine(settings, "events-statements")
    catalog = Catalog(session_factory(engine))
    owner = Claims(
        user_id=10_000_001,
        typ="access",
        jti="jti",
        expires_at=datetime.now(UTC),
        role="Instructor",
        full_name="Counting Instructor",
    )

    async def statements(write: Callable[[], Awaitable[Any]]) -> int:
        with counting_statements(engine) as counter:
            await write()
        return counter.count

    try:
        created: list[Any] = []

        async def create() -> None:
            created.append(
                await catalog.create_course(owner, {"title": "n", "short_description": "d"})
            )

        counts = {"create course": await statements(create)}
        course_id = created[0].course.id
        counts["update course"] = await statements(
            lambda: catalog.update_course(owner, course_id, {"title": "m"}, ["title"])
        )
        counts["create lesson"] = await statements(
            lambda: catalog.create_lesson(owner, course_id, title="l", content="c", order=1)
        )
        counts["bulk create"] = await statements(
            lambda: catalog.bulk_create_lessons(
                owner, course_id, [NewLesson("a", "c", 2), NewLesson("b", "c", 3)]
            )
        )
        lesson_id = (await catalog.get_course(owner, course_id)).lessons[0].id
        counts["update lesson"] = await statements(
            lambda: catalog.update_lesson(owner, lesson_id, {"title": "t"}, ["title"])
        )
        counts["delete lesson"] = await statements(lambda: catalog.delete_lesson(owner, lesson_id))
        counts["publish"] = await statements(lambda: catalog.publish_course(owner, course_id))
        counts["delete course"] = await statements(lambda: catalog.delete_course(owner, course_id))
    finally:
        await engine.dispose()
    assert counts == {
        "create course": 3,  # code number, insert, outbox
        "update course": 4,  # lock, update (+version), lessons of the answer, outbox
        "create lesson": 4,  # course, bump (lock), insert, outbox
        "bulk create": 5,  # course, bump (lock), taken orders, insert, outbox
        "update lesson": 4,  # lesson, bump (lock), update, outbox
        "delete lesson": 4,  # lesson, bump (lock), delete, outbox
        "publish": 4,  # lock, update (+version), lessons of the answer, outbox
        "delete course": 5,  # lock, clock, lessons, course (+version), outbox
    }


async def test_a_lesson_deleted_while_its_write_waited_for_the_course_is_not_found(
    client: httpx.AsyncClient, instructor: User, database_url: str
) -> None:
    """A lesson update reads the lesson without a lock, then waits for the course lock (the
    version bump); if the lesson was deleted meanwhile the answer is 404 and nothing is emitted."""
    course_id = await create_course(client, instructor)
    created = await client.post(
        "/api/lessons/",
        json={"course": course_id, "title": "L", "content": "c", "order": 1},
        headers=instructor.headers,
    )
    lesson_id = created.json()["id"]
    async with await psycopg.AsyncConnection.connect(database_url) as holder:
        await holder.execute(
            "SELECT 1 FROM catalog.courses WHERE id = %s FOR NO KEY UPDATE", (course_id,)
        )
        update = asyncio.create_task(
            client.patch(
                f"/api/lessons/{lesson_id}/", json={"title": "late"}, headers=instructor.headers
            )
        )

        async def waiting() -> bool:
            rows = await query(
                database_url,
                "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()"
                " AND query LIKE 'UPDATE catalog.courses SET version%%'",
            )
            return rows[0]["n"] > 0

        await eventually(waiting, "the update to wait for the course lock")
        await holder.execute(
            "UPDATE catalog.lessons SET deleted_at = clock_timestamp() WHERE id = %s",
            (lesson_id,),
        )
        await holder.commit()
        assert_error_body(await update, 404)
    assert [row["event"].version for row in await course_events(database_url, course_id)] == [
        1,
        2,
    ]
    assert await course_version(database_url, course_id) == 2
