"""Enrollments rows of CONTRACT.md, through the gateway, the learning and catalog services."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import User, assert_error_body, register_and_login
from tests.learning_support import (
    enroll,
    enrollment_detail,
    learning_caught_up,
    progress_rows,
    published_course,
    query,
)

ENROLLMENT_FIELDS = {
    "id",
    "student",
    "student_name",
    "course",
    "course_title",
    "enrolled_at",
    "completed_at",
    "is_completed",
    "created_at",
    "updated_at",
}


async def test_enroll_creates_enrollment_and_one_progress_row_per_lesson(
    client: httpx.AsyncClient, student: User, instructor: User, database_url: str
) -> None:
    course = await published_course(client, instructor, lessons=3)
    body = await enroll(client, student, course.id)
    assert set(body) == ENROLLMENT_FIELDS
    assert body["student"] == student.id
    assert body["student_name"] == student.full_name
    assert body["course"] == course.id
    assert body["course_title"] == course.title
    assert body["is_completed"] is False and body["completed_at"] is None
    assert body["enrolled_at"].endswith("Z")

    rows = await progress_rows(client, student, body["id"])
    assert [row["lesson"] for row in rows] == course.lesson_ids
    assert [row["lesson_title"] for row in rows] == ["Lesson 1", "Lesson 2", "Lesson 3"]
    assert all(row["completed"] is False and row["completed_at"] is None for row in rows)
    assert {row["enrollment"] for row in rows} == {body["id"]}
    stored = await query(
        database_url,
        "SELECT count(*) AS n FROM learning.lesson_progress WHERE enrollment_id = %s",
        body["id"],
    )
    assert stored[0]["n"] == 3


async def test_enroll_with_a_form_body(
    client: httpx.AsyncClient, student: User, instructor: User
) -> None:
    course = await published_course(client, instructor, lessons=1)
    response = await client.post(
        "/api/enrollments", data={"course": str(course.id)}, headers=student.headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["course"] == course.id


async def test_detail_has_figures(
    client: httpx.AsyncClient, student: User, instructor: User
) -> None:
    course = await published_course(client, instructor, lessons=3)
    enrollment = await enroll(client, student, course.id)
    detail = await enrollment_detail(client, student, enrollment["id"])
    assert detail["total_lessons"] == 3
    assert detail["completed_lessons"] == 0
    assert detail["completion_percentage"] == 0
    for field in ("id", "course", "course_title", "enrolled_at", "completed_at", "is_completed"):
        assert detail[field] == enrollment[field]


async def test_draft_course_is_400_on_course(
    client: httpx.AsyncClient, student: User, instructor: User
) -> None:
    course = await published_course(client, instructor, lessons=2, publish=False)
    response = await client.post(
        "/api/enrollments/", json={"course": course.id}, headers=student.headers
    )
    body = assert_error_body(response, 400, "course")
    assert body["errors"]["course"] == ["Only published courses can be enrolled in"]


async def test_enrolling_twice_is_400_on_course(
    client: httpx.AsyncClient, student: User, instructor: User
) -> None:
    course = await published_course(client, instructor, lessons=1)
    await enroll(client, student, course.id)
    again = await client.post(
        "/api/enrollments/", json={"course": course.id}, headers=student.headers
    )
    assert_error_body(again, 400, "course")


async def test_unknown_course_is_404(client: httpx.AsyncClient, student: User) -> None:
    response = await client.post(
        "/api/enrollments/", json={"course": 2**62}, headers=student.headers
    )
    assert_error_body(response, 404)


async def test_course_with_no_lessons_can_be_enrolled_in(
    client: httpx.AsyncClient, student: User, instructor: User
) -> None:
    course = await published_course(client, instructor, lessons=0)
    enrollment = await enroll(client, student, course.id)
    detail = await enrollment_detail(client, student, enrollment["id"])
    assert (detail["total_lessons"], detail["completion_percentage"]) == (0, 0)
    assert detail["is_completed"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "course"),
        ({"course": None}, "course"),
        ({"course": "abc"}, "course"),
        ({"course": "5"}, "course"),  # JSON ids are integers
        ({"course": 1.5}, "course"),
        ({"course": True}, "course"),
        ({"course": 0}, "course"),
        ({"course": -4}, "course"),
        ({"course": 2**64}, "course"),
        ({"course": [1]}, "course"),
        ({"course": 1, "cours": 1}, "cours"),
    ],
)
async def test_bad_enroll_bodies_are_400(
    client: httpx.AsyncClient, student: User, body: dict, field: str
) -> None:
    response = await client.post("/api/enrollments/", json=body, headers=student.headers)
    assert_error_body(response, 400, field)


async def test_malformed_json_is_400(client: httpx.AsyncClient, student: User) -> None:
    response = await client.post(
        "/api/enrollments/",
        content=b'{"course": ',
        headers={**student.headers, "content-type": "application/json"},
    )
    assert_error_body(response, 400)


async def test_list_is_own_enrollments_paginated(
    client: httpx.AsyncClient, instructor: User
) -> None:
    mine = await register_and_login(client, "Student")
    other = await register_and_login(client, "Student")
    courses = [await published_course(client, instructor, lessons=1) for _ in range(3)]
    for course in courses:
        await enroll(client, mine, course.id)
    await enroll(client, other, courses[0].id)

    page = await client.get("/api/enrollments/", params={"page_size": 2}, headers=mine.headers)
    assert page.status_code == 200, page.text
    body = page.json()
    assert body["count"] == 3
    assert len(body["results"]) == 2 and body["next"] and body["previous"] is None
    second = await client.get(body["next"], headers=mine.headers)
    assert second.status_code == 200, second.text
    results = body["results"] + second.json()["results"]
    assert {item["course"] for item in results} == {course.id for course in courses}
    assert {item["student"] for item in results} == {mine.id}
    assert_error_body(
        await client.get(
            "/api/enrollments/", params={"page": 3, "page_size": 2}, headers=mine.headers
        ),
        404,
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page": 0}, "page"),
        ({"page": "x"}, "page"),
        ({"page_size": 101}, "page_size"),
        ({"page_size": 0}, "page_size"),
    ],
)
@pytest.mark.parametrize("path", ["/api/enrollments/", "/api/progress/"])
async def test_bad_paging_is_400(
    client: httpx.AsyncClient, student: User, path: str, params: dict, field: str
) -> None:
    assert_error_body(await client.get(path, params=params, headers=student.headers), 400, field)


async def test_other_students_enrollment_is_404(
    client: httpx.AsyncClient, student: User, instructor: User
) -> None:
    course = await published_course(client, instructor, lessons=1)
    enrollment = await enroll(client, student, course.id)
    stranger = await register_and_login(client, "Student")
    assert_error_body(
        await client.get(f"/api/enrollments/{enrollment['id']}/", headers=stranger.headers), 404
    )
    assert_error_body(await client.get("/api/enrollments/999999999/", headers=student.headers), 404)
    assert_error_body(await client.get("/api/enrollments/abc/", headers=student.headers), 404)
    assert_error_body(await client.get("/api/enrollments/0/", headers=student.headers), 404)


async def test_instructors_get_403(client: httpx.AsyncClient, instructor: User) -> None:
    course = await published_course(client, instructor, lessons=1)
    headers = instructor.headers
    assert_error_body(await client.get("/api/enrollments/", headers=headers), 403)
    assert_error_body(
        await client.post("/api/enrollments/", json={"course": course.id}, headers=headers), 403
    )
    assert_error_body(await client.get("/api/enrollments/1/", headers=headers), 403)


async def test_no_token_is_401(client: httpx.AsyncClient) -> None:
    assert_error_body(await client.get("/api/enrollments/"), 401)
    assert_error_body(await client.post("/api/enrollments/", json={"course": 1}), 401)
    assert_error_body(
        await client.get("/api/enrollments/", headers={"Authorization": "Bearer nope"}), 401
    )


async def test_course_title_follows_a_rename(
    client: httpx.AsyncClient, student: User, instructor: User, database_url: str
) -> None:
    course = await published_course(client, instructor, lessons=1)
    enrollment = await enroll(client, student, course.id)
    renamed = await client.patch(
        f"/api/courses/{course.id}/", json={"title": "Renamed course"}, headers=instructor.headers
    )
    assert renamed.status_code == 200, renamed.text
    # Learning's copy of the course is stale once it read the rename's event.
    await learning_caught_up(database_url, course.id)
    listed = (await client.get("/api/enrollments/", headers=student.headers)).json()["results"]
    assert [item["course_title"] for item in listed] == ["Renamed course"]
    detail = await enrollment_detail(client, student, enrollment["id"])
    assert detail["course_title"] == "Renamed course"
