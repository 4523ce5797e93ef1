"""Courses change after students enrolled: added lessons count, deleted ones stop counting.

Each change is followed by `learning_caught_up`: learning answers from its own copy of the
course's lessons, which the change's CourseChanged event makes stale, so a read reflects a change
once learning has read its event (a few milliseconds; docs/learning.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from redis.asyncio import Redis

from tests.conftest import User, assert_error_body
from tests.learning_support import (
    complete,
    enroll,
    enrollment_detail,
    learning_caught_up,
    outbox_rows,
    progress_rows,
    published_course,
    published_events,
)


async def add_lesson(
    client: httpx.AsyncClient, instructor: User, course_id: int, order: int, database_url: str
) -> int:
    response = await client.post(
        "/api/lessons/",
        json={"course": course_id, "title": f"Added {order}", "content": "New", "order": order},
        headers=instructor.headers,
    )
    assert response.status_code == 201, response.text
    await learning_caught_up(database_url, course_id)
    return response.json()["id"]


async def delete_lesson(
    client: httpx.AsyncClient, instructor: User, course_id: int, lesson_id: int, database_url: str
) -> None:
    response = await client.delete(f"/api/lessons/{lesson_id}/", headers=instructor.headers)
    assert response.status_code == 204, response.text
    await learning_caught_up(database_url, course_id)


async def test_lesson_added_after_enrollment_must_be_completed(
    client: httpx.AsyncClient, student: User, instructor: User, database_url: str
) -> None:
    course = await published_course(client, instructor, lessons=2)
    enrollment = await enroll(client, student, course.id)
    rows = await progress_rows(client, student, enrollment["id"])
    assert (await complete(client, student, rows[0]["id"])).status_code == 200

    added = await add_lesson(client, instructor, course.id, order=3, database_url=database_url)
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
    client: httpx.AsyncClient, student: User, instructor: User, database_url: str
) -> None:
    course = await published_course(client, instructor, lessons=0)
    await add_lesson(client, instructor, course.id, order=5, database_url=database_url)
    enrollment = await enroll(client, student, course.id)
    [row] = await progress_rows(client, student, enrollment["id"])
    await add_lesson(client, instructor, course.id, order=2, database_url=database_url)
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
    await delete_lesson(client, instructor, course.id, course.lesson_ids[1], database_url)

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
    await delete_lesson(client, instructor, course.id, course.lesson_ids[2], database_url)
    # Nothing is left to complete, so the next look at the enrollment finishes it (once).
    detail = await enrollment_detail(client, student, enrollment["id"])
    assert detail["is_completed"] is True
    assert (detail["total_lessons"], detail["completion_percentage"]) == (2, 100)
    again = await enrollment_detail(client, student, enrollment["id"])
    assert again["completed_at"] == detail["completed_at"]
    assert len(await outbox_rows(database_url, enrollment["id"])) == 1


async def test_percentage_stays_within_bounds_when_lessons_come_and_go(
    client: httpx.AsyncClient, student: User, instructor: User, database_url: str
) -> None:
    course = await published_course(client, instructor, lessons=2)
    enrollment = await enroll(client, student, course.id)
    rows = await progress_rows(client, student, enrollment["id"])
    assert (await complete(client, student, rows[0]["id"])).status_code == 200
    await delete_lesson(client, instructor, course.id, course.lesson_ids[1], database_url)
    await add_lesson(client, instructor, course.id, order=7, database_url=database_url)
    await add_lesson(client, instructor, course.id, order=8, database_url=database_url)
    detail = await enrollment_detail(client, student, enrollment["id"])
    assert (detail["total_lessons"], detail["completed_lessons"]) == (3, 1)
    assert detail["completion_percentage"] == 33.33


async def test_reordered_lessons_follow_the_catalog(
    client: httpx.AsyncClient, student: User, instructor: User, database_url: str
) -> None:
    course = await published_course(client, instructor, lessons=2)
    enrollment = await enroll(client, student, course.id)
    rows = await progress_rows(client, student, enrollment["id"])
    moved = await client.patch(
        f"/api/lessons/{course.lesson_ids[0]}/", json={"order": 9}, headers=instructor.headers
    )
    assert moved.status_code == 200, moved.text
    await learning_caught_up(database_url, course.id)
    # Lesson 2 now comes first, so it can be completed and the old first one cannot yet.
    assert (await complete(client, student, rows[1]["id"])).status_code == 200
    now = await progress_rows(client, student, enrollment["id"])
    assert [row["lesson"] for row in now] == [course.lesson_ids[1], course.lesson_ids[0]]


async def test_completed_enrollment_is_final(
    client: httpx.AsyncClient, student: User, instructor: User, database_url: str
) -> None:
    course = await published_course(client, instructor, lessons=1)
    enrollment = await enroll(client, student, course.id)
    [row] = await progress_rows(client, student, enrollment["id"])
    assert (await complete(client, student, row["id"])).status_code == 200
    await add_lesson(client, instructor, course.id, order=2, database_url=database_url)
    detail = await enrollment_detail(client, student, enrollment["id"])
    assert detail["is_completed"] is True
    assert (detail["total_lessons"], detail["completion_percentage"]) == (1, 100)


async def test_deleted_course_keeps_the_record(
    client: httpx.AsyncClient, student: User, instructor: User, database_url: str
) -> None:
    course = await published_course(client, instructor, lessons=2)
    enrollment = await enroll(client, student, course.id)
    rows = await progress_rows(client, student, enrollment["id"])
    assert (await complete(client, student, rows[0]["id"])).status_code == 200
    deleted = await client.delete(f"/api/courses/{course.id}/", headers=instructor.headers)
    assert deleted.status_code == 204, deleted.text
    await learning_caught_up(database_url, course.id)

    detail = await enrollment_detail(client, student, enrollment["id"])
    assert (detail["total_lessons"], detail["completed_lessons"]) == (2, 1)
    assert len(await progress_rows(client, student, enrollment["id"])) == 2
    everything = await client.get("/api/progress/", headers=student.headers)
    assert everything.json()["count"] == 2
    assert_error_body(await complete(client, student, rows[1]["id"]), 400, "lesson")


# Reads answer from stored rows when they are reconciled with the catalog; each read below is the
# first look after the change (once learning read its event), so it must notice the change itself.


@dataclass
class ChangedCourse:
    enrollment_id: int
    rows: list[dict[str, Any]]  # progress rows as they were before the changes
    kept: list[int]  # lesson ids that still count, in course order
    added: int


async def change_course_after_enrollment(
    client: httpx.AsyncClient, student: User, instructor: User, database_url: str
) -> ChangedCourse:
    """Three lessons, the first completed; then lesson 2 deleted, lesson 3 renamed, a fourth
    added and the course renamed. Nothing reads the enrollment after the changes."""
    course = await published_course(client, instructor, lessons=3)
    enrollment = await enroll(client, student, course.id)
    rows = await progress_rows(client, student, enrollment["id"])
    assert (await complete(client, student, rows[0]["id"])).status_code == 200
    await delete_lesson(client, instructor, course.id, course.lesson_ids[1], database_url)
    renamed = await client.patch(
        f"/api/lessons/{course.lesson_ids[2]}/",
        json={"title": "Renamed"},
        headers=instructor.headers,
    )
    assert renamed.status_code == 200, renamed.text
    added = await add_lesson(client, instructor, course.id, order=4, database_url=database_url)
    retitled = await client.patch(
        f"/api/courses/{course.id}/", json={"title": "Course renamed"}, headers=instructor.headers
    )
    assert retitled.status_code == 200, retitled.text
    await learning_caught_up(database_url, course.id)
    kept = [course.lesson_ids[0], course.lesson_ids[2], added]
    return ChangedCourse(enrollment["id"], rows, kept, added)


EXPECTED_TITLES = ["Lesson 1", "Renamed", "Added 4"]


async def test_enrollment_read_follows_catalog_changes(
    client: httpx.AsyncClient, student: User, instructor: User, database_url: str
) -> None:
    changed = await change_course_after_enrollment(client, student, instructor, database_url)
    detail = await enrollment_detail(client, student, changed.enrollment_id)
    assert detail["course_title"] == "Course renamed"
    assert (detail["total_lessons"], detail["completed_lessons"]) == (3, 1)
    assert detail["completion_percentage"] == 33.33
    assert detail["is_completed"] is False


async def test_progress_of_an_enrollment_follows_catalog_changes(
    client: httpx.AsyncClient, student: User, instructor: User, database_url: str
) -> None:
    changed = await change_course_after_enrollment(client, student, instructor, database_url)
    rows = await progress_rows(client, student, changed.enrollment_id)
    assert [row["lesson"] for row in rows] == changed.kept
    assert [row["lesson_title"] for row in rows] == EXPECTED_TITLES
    assert [row["completed"] for row in rows] == [True, False, False]


async def test_all_progress_follows_catalog_changes(
    client: httpx.AsyncClient, student: User, instructor: User, database_url: str
) -> None:
    changed = await change_course_after_enrollment(client, student, instructor, database_url)
    response = await client.get("/api/progress/", headers=student.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == 3
    assert [row["lesson"] for row in body["results"]] == changed.kept
    assert [row["lesson_title"] for row in body["results"]] == EXPECTED_TITLES


async def test_one_progress_row_follows_catalog_changes(
    client: httpx.AsyncClient, student: User, instructor: User, database_url: str
) -> None:
    changed = await change_course_after_enrollment(client, student, instructor, database_url)
    response = await client.get(f"/api/progress/{changed.rows[2]['id']}/", headers=student.headers)
    assert response.status_code == 200, response.text
    assert response.json()["lesson_title"] == "Renamed"


async def test_one_deleted_progress_row_is_gone_on_first_read(
    client: httpx.AsyncClient, student: User, instructor: User, database_url: str
) -> None:
    changed = await change_course_after_enrollment(client, student, instructor, database_url)
    assert_error_body(
        await client.get(f"/api/progress/{changed.rows[1]['id']}/", headers=student.headers), 404
    )


async def test_listing_progress_completes_a_course_whose_last_open_lesson_was_deleted(
    client: httpx.AsyncClient, student: User, instructor: User, database_url: str
) -> None:
    course = await published_course(client, instructor, lessons=2)
    enrollment = await enroll(client, student, course.id)
    rows = await progress_rows(client, student, enrollment["id"])
    assert (await complete(client, student, rows[0]["id"])).status_code == 200
    await delete_lesson(client, instructor, course.id, course.lesson_ids[1], database_url)
    # The first look is the student's whole progress list, not the enrollment.
    listed = await client.get("/api/progress/", headers=student.headers)
    assert listed.status_code == 200, listed.text
    assert [row["lesson"] for row in listed.json()["results"]] == [course.lesson_ids[0]]
    assert len(await outbox_rows(database_url, enrollment["id"])) == 1
    detail = await enrollment_detail(client, student, enrollment["id"])
    assert detail["is_completed"] is True and detail["completion_percentage"] == 100
    assert len(await outbox_rows(database_url, enrollment["id"])) == 1
