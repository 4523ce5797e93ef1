"""Helpers for the learning tests: courses made through the real REST API, and looks at the
learning schema and the event stream."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import psycopg
from courseplatform.events.v1 import events_pb2
from psycopg.rows import dict_row
from redis.asyncio import Redis

from libs import streams
from tests.conftest import User

T = TypeVar("T")
WAIT_S = 15.0


@dataclass
class Course:
    id: int
    title: str
    lesson_ids: list[int]


async def published_course(
    client: httpx.AsyncClient, instructor: User, lessons: int = 3, publish: bool = True
) -> Course:
    title = f"Course {uuid.uuid4().hex[:8]}"
    created = await client.post(
        "/api/courses/",
        json={"title": title, "short_description": "Learn things in order."},
        headers=instructor.headers,
    )
    assert created.status_code == 201, created.text
    course_id = created.json()["id"]
    lesson_ids: list[int] = []
    if lessons:
        bulk = await client.post(
            "/api/lessons/bulk_create/",
            json={
                "course": course_id,
                "lessons": [
                    {"title": f"Lesson {n}", "content": f"Content {n}", "order": n}
                    for n in range(1, lessons + 1)
                ],
            },
            headers=instructor.headers,
        )
        assert bulk.status_code == 201, bulk.text
        lesson_ids = [lesson["id"] for lesson in sorted(bulk.json(), key=lambda x: x["order"])]
    if publish:
        published = await client.post(
            f"/api/courses/{course_id}/publish/", headers=instructor.headers
        )
        assert published.status_code == 200, published.text
    return Course(id=course_id, title=title, lesson_ids=lesson_ids)


async def enroll(client: httpx.AsyncClient, student: User, course_id: int) -> dict[str, Any]:
    response = await client.post(
        "/api/enrollments/", json={"course": course_id}, headers=student.headers
    )
    assert response.status_code == 201, response.text
    return response.json()


async def progress_rows(
    client: httpx.AsyncClient, student: User, enrollment_id: int
) -> list[dict[str, Any]]:
    response = await client.get(
        "/api/progress/",
        params={"enrollment": enrollment_id, "page_size": 100},
        headers=student.headers,
    )
    assert response.status_code == 200, response.text
    return response.json()["results"]


async def enrollment_detail(
    client: httpx.AsyncClient, student: User, enrollment_id: int
) -> dict[str, Any]:
    response = await client.get(f"/api/enrollments/{enrollment_id}/", headers=student.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def complete(client: httpx.AsyncClient, student: User, progress_id: int) -> httpx.Response:
    return await client.post(f"/api/progress/{progress_id}/complete/", headers=student.headers)


async def query(database_url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row) as conn:
        cursor = await conn.execute(sql, params)
        return await cursor.fetchall()


async def outbox_rows(database_url: str, enrollment_id: int) -> list[dict[str, Any]]:
    return await query(
        database_url,
        "SELECT * FROM learning.outbox WHERE dedup_key = %s",
        f"course_completed:enrollment:{enrollment_id}",
    )


async def published_events(
    redis: Redis, database_url: str, enrollment_id: int
) -> list[events_pb2.CourseCompleted]:
    """The stream entries of this enrollment's outbox rows, once the relay published them all.

    Matched on event id, not enrollment id: the stream outlives test runs (and may be shared by
    runs going on at once), while each run's database numbers its enrollments from 1 again.
    """

    async def sent() -> list[dict[str, Any]] | None:
        rows = await outbox_rows(database_url, enrollment_id)
        return rows if rows and all(row["published_at"] for row in rows) else None

    ids = {str(row["event_id"]) for row in await eventually(sent, "the relay to publish")}
    found = []
    for _, fields in await redis.xrange(streams.COURSE_COMPLETED_STREAM, "-", "+"):
        if fields[streams.FIELD_EVENT_ID.encode()].decode() in ids:
            found.append(
                events_pb2.CourseCompleted.FromString(fields[streams.FIELD_EVENT.encode()])
            )
    return found


async def learning_caught_up(database_url: str, course_id: int) -> None:
    """Wait until learning has read the CourseChanged event of the course's current catalog
    version: from then on every read and completion reflects the change (docs/learning.md
    "The copy of each course's lessons"). Until then a read may answer from the copy as it was."""

    async def seen() -> bool:
        rows = await query(
            database_url,
            "SELECT c.version AS catalog, l.latest_version AS seen FROM catalog.courses c"
            " LEFT JOIN learning.course_lessons l ON l.course_id = c.id WHERE c.id = %s",
            course_id,
        )
        return bool(rows) and (rows[0]["seen"] or 0) >= rows[0]["catalog"]

    await eventually(seen, f"learning to read course {course_id}'s change event")


async def eventually(check: Callable[[], Awaitable[T | None]], what: str) -> T:
    """Poll `check` until it returns something truthy (bounded; a wait, not a timing assertion)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
