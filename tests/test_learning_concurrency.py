"""Races the database must decide: simultaneous enrollments and simultaneous final completions."""

from __future__ import annotations

import asyncio

import httpx
from redis.asyncio import Redis

from tests.conftest import User, assert_error_body
from tests.learning_support import (
    complete,
    enroll,
    enrollment_detail,
    outbox_rows,
    progress_rows,
    published_course,
    published_events,
    query,
)


async def test_twenty_concurrent_enrollments_make_one(
    client: httpx.AsyncClient, student: User, instructor: User, database_url: str
) -> None:
    course = await published_course(client, instructor, lessons=2)
    responses = await asyncio.gather(
        *(
            client.post("/api/enrollments/", json={"course": course.id}, headers=student.headers)
            for _ in range(20)
        )
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] + [400] * 19, [r.text for r in responses if r.status_code != 400]
    for response in responses:
        if response.status_code == 400:
            assert_error_body(response, 400, "course")
    rows = await query(
        database_url,
        "SELECT id FROM learning.enrollments WHERE student_id = %s AND course_id = %s",
        student.id,
        course.id,
    )
    assert len(rows) == 1
    progress = await query(
        database_url,
        "SELECT count(*) AS n FROM learning.lesson_progress WHERE enrollment_id = %s",
        rows[0]["id"],
    )
    assert progress[0]["n"] == 2


async def test_concurrent_final_completions_complete_once(
    client: httpx.AsyncClient, student: User, instructor: User, database_url: str, redis: Redis
) -> None:
    course = await published_course(client, instructor, lessons=2)
    enrollment = await enroll(client, student, course.id)
    rows = await progress_rows(client, student, enrollment["id"])
    assert (await complete(client, student, rows[0]["id"])).status_code == 200

    last = rows[1]["id"]
    responses = await asyncio.gather(
        complete(client, student, last),
        client.patch(f"/api/progress/{last}/", json={"completed": True}, headers=student.headers),
        complete(client, student, last),
        client.put(f"/api/progress/{last}/", json={"completed": True}, headers=student.headers),
    )
    assert all(response.status_code == 200 for response in responses), [
        response.text for response in responses
    ]

    stored = await query(
        database_url,
        "SELECT completed_at FROM learning.enrollments WHERE id = %s",
        enrollment["id"],
    )
    assert stored[0]["completed_at"] is not None
    assert (await enrollment_detail(client, student, enrollment["id"]))["is_completed"] is True
    [outbox] = await outbox_rows(database_url, enrollment["id"])

    events = await published_events(redis, database_url, enrollment["id"])
    assert [event.event_id for event in events] == [str(outbox["event_id"])]


async def test_concurrent_completions_of_different_lessons_keep_the_order(
    client: httpx.AsyncClient, student: User, instructor: User
) -> None:
    """Lesson 2 and lesson 1 at once: lesson 2 may only succeed if lesson 1 committed first."""
    course = await published_course(client, instructor, lessons=2)
    enrollment = await enroll(client, student, course.id)
    rows = await progress_rows(client, student, enrollment["id"])
    first, second = await asyncio.gather(
        complete(client, student, rows[0]["id"]), complete(client, student, rows[1]["id"])
    )
    assert first.status_code == 200, first.text
    assert second.status_code in (200, 400), second.text
    after = await progress_rows(client, student, enrollment["id"])
    assert after[0]["completed"] is True
    assert after[1]["completed"] is (second.status_code == 200)
    if after[1]["completed"]:
        assert after[1]["completed_at"] >= after[0]["completed_at"]
