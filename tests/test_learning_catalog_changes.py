"""Courses change after students enrolled: added lessons count, deleted ones stop counting."""

from __future__ import annotations

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
)


async def add_lesson(
    client: httpx.AsyncClient, instructor: User, course_id: int, order: int
) -> int:
    response = await client.post(
        "/api/lessons/",
        json={"course": course_id, "title": f"Added {order}", "content": "New", "order": order},
        headers=instructor.headers,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def delete_lesson(client: httpx.AsyncClient, instructor: User, lesson_id: int) -> None:
    response = await client.delete(f"/api/lessons/{lesson_id}/", headers=instructor.headers)
    assert response.status_code == 204, response.text


async def test_lesson_added_after_enrollment_must_be_completed(
    client: httpx.AsyncClient, student: User, instructor: User, database_url: str
) -> None:
    course = await published_course(client, instructor, lessons=2)
    enrollment = await enroll(client, student, course.id)
    rows = await progress_rows(client, student, enrollment["id"])
    assert (await complete(client, student, rows[0]["id"])).status_code == 200

    added = await add_lesson(client, instructor, course.id, order=3)
    # Completing what used to be the last lesson no longer completes the course.
    assert (await complete(client, student, rows[1]["id"])).status_code == 200
    detail = await enrollment_detail(client, student, enrollment["id"])
    assert (detail["total_lessons"], detail["completed_lessons"]) == (3, 2)
    assert detail["completion_percentage"] == 66.67
    assert detail["is_completed"] is False
    assert await outbox_rows(database_url, enrollment["id"]) == []

    rows = await progress_rows(client, student, enrollment["id"])
    assert [row["lesson"] for row in rows] == [*course.lesson_ids, added]
    assert rows[2]["lesson_title"] == "Added 3" and rows[2]["completed"] is False
    assert (await complete(client, student, rows[2]["id"])).status_code == 200
    detail = await enrollment_detail(client, student, enrollment["id"])
    assert detail["is_completed"] is True and detail["completion_percentage"] == 100
    assert len(await outbox_rows(database_url, enrollment["id"])) == 1


async def test_added_lesson_in_front_blocks_later_ones(
    client: httpx.AsyncClient, student: User, instructor: User
) -> None:
    course = await published_course(client, instructor, lessons=0)
    await add_lesson(client, instructor, course.id, order=5)
    enrollment = await enroll(client, student, course.id)
    [row] = await progress_rows(client, student, enrollment["id"])
    await add_lesson(client, instructor, course.id, order=2)
    response = await complete(client, student, row["id"])
    body = assert_error_body(response, 400, "lesson")
    assert body["errors"]["lesson"] == [
        "You must complete lesson 2 (Added 2) before completing this lesson."
    ]


async def test_deleted_lesson_does_not_block_completion(
    client: httpx.AsyncClient, student: User, instructor: User, redis: Redis, database_url: str
) -> None:
    course = await published_course(client, instructor, lessons=3)
    enrollment = await enroll(client, student, course.id)
    rows = await progress_rows(client, student, enrollment["id"])
    await delete_lesson(client, instructor, course.lesson_ids[1])

    assert (await complete(client, student, rows[0]["id"])).status_code == 200
    # Lesson 2 is gone, so lesson 3 is next.
    assert (await complete(client, student, rows[2]["id"])).status_code == 200
    detail = await enrollment_detail(client, student, enrollment["id"])
    assert (detail["total_lessons"], detail["completed_lessons"]) == (2, 2)
    assert detail["is_completed"] is True and detail["completion_percentage"] == 100
    remaining = await progress_rows(client, student, enrollment["id"])
    assert [row["lesson"] for row in remaining] == [course.lesson_ids[0], course.lesson_ids[2]]
    # The deleted lesson's row is no longer visible.
    assert_error_body(
        await client.get(f"/api/progress/{rows[1]['id']}/", headers=student.headers), 404
    )
    assert len(await published_events(redis, database_url, enrollment["id"])) == 1


async def test_deleting_the_last_open_lesson_completes_the_course(
    client: httpx.AsyncClient, student: User, instructor: User, database_url: str
) -> None:
    course = await published_course(client, instructor, lessons=3)
    enrollment = await enroll(client, student, course.id)
    rows = await progress_rows(client, student, enrollment["id"])
    for row in rows[:2]:
        assert (await complete(client, student, row["id"])).status_code == 200
    await delete_lesson(client, instructor, course.lesson_ids[2])
    # Nothing is left to complete, so the next look at the enrollment finishes it (once).
    detail = await enrollment_detail(client, student, enrollment["id"])
    assert detail["is_completed"] is True
    assert (detail["total_lessons"], detail["completion_percentage"]) == (2, 100)
    again = await enrollment_detail(client, student, enrollment["id"])
    assert again["completed_at"] == detail["completed_at"]
    assert len(await outbox_rows(database_url, enrollment["id"])) == 1


async def test_percentage_stays_within_bounds_when_lessons_come_and_go(
    client: httpx.AsyncClient, student: User, instructor: User
) -> None:
    course = await published_course(client, instructor, lessons=2)
    enrollment = await enroll(client, student, course.id)
    rows = await progress_rows(client, student, enrollment["id"])
    assert (await complete(client, student, rows[0]["id"])).status_code == 200
    await delete_lesson(client, instructor, course.lesson_ids[1])
    await add_lesson(client, instructor, course.id, order=7)
    await add_lesson(client, instructor, course.id, order=8)
    detail = await enrollment_detail(client, student, enrollment["id"])
    assert (detail["total_lessons"], detail["completed_lessons"]) == (3, 1)
    assert detail["completion_percentage"] == 33.33


async def test_reordered_lessons_follow_the_catalog(
    client: httpx.AsyncClient, student: User, instructor: User
) -> None:
    course = await published_course(client, instructor, lessons=2)
    enrollment = await enroll(client, student, course.id)
    rows = await progress_rows(client, student, enrollment["id"])
    moved = await client.patch(
        f"/api/lessons/{course.lesson_ids[0]}/", json={"order": 9}, headers=instructor.headers
    )
    assert moved.status_code == 200, moved.text
    # Lesson 2 now comes first, so it can be completed and the old first one cannot yet.
    assert (await complete(client, student, rows[1]["id"])).status_code == 200
    now = await progress_rows(client, student, enrollment["id"])
    assert [row["lesson"] for row in now] == [course.lesson_ids[1], course.lesson_ids[0]]


async def test_completed_enrollment_is_final(
    client: httpx.AsyncClient, student: User, instructor: User
) -> None:
    course = await published_course(client, instructor, lessons=1)
    enrollment = await enroll(client, student, course.id)
    [row] = await progress_rows(client, student, enrollment["id"])
    assert (await complete(client, student, row["id"])).status_code == 200
    await add_lesson(client, instructor, course.id, order=2)
    detail = await enrollment_detail(client, student, enrollment["id"])
    assert detail["is_completed"] is True
    assert (detail["total_lessons"], detail["completion_percentage"]) == (1, 100)


async def test_deleted_course_keeps_the_record(
    client: httpx.AsyncClient, student: User, instructor: User
) -> None:
    course = await published_course(client, instructor, lessons=2)
    enrollment = await enroll(client, student, course.id)
    rows = await progress_rows(client, student, enrollment["id"])
    assert (await complete(client, student, rows[0]["id"])).status_code == 200
    deleted = await client.delete(f"/api/courses/{course.id}/", headers=instructor.headers)
    assert deleted.status_code == 204, deleted.text

    detail = await enrollment_detail(client, student, enrollment["id"])
    assert (detail["total_lessons"], detail["completed_lessons"]) == (2, 1)
    assert len(await progress_rows(client, student, enrollment["id"])) == 2
    everything = await client.get("/api/progress/", headers=student.headers)
    assert everything.json()["count"] == 2
    assert_error_body(await complete(client, student, rows[1]["id"]), 400, "lesson")
