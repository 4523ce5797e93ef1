"""Students list the lessons of the courses they are enrolled in, and only those."""

from __future__ import annotations

import httpx

from tests.conftest import User
from tests.learning_support import enroll, published_course


async def test_student_sees_lessons_of_enrolled_courses_only(
    client: httpx.AsyncClient, student: User, instructor: User
) -> None:
    enrolled = await published_course(client, instructor, lessons=2)
    other = await published_course(client, instructor, lessons=3)

    before = await client.get("/api/lessons/", headers=student.headers)
    assert before.status_code == 200, before.text
    assert before.json()["count"] == 0

    await enroll(client, student, enrolled.id)
    listed = await client.get("/api/lessons/", headers=student.headers)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["count"] == 2
    assert [lesson["id"] for lesson in body["results"]] == enrolled.lesson_ids
    assert {lesson["course"] for lesson in body["results"]} == {enrolled.id}

    by_course = await client.get(
        "/api/lessons/", params={"course": enrolled.id}, headers=student.headers
    )
    assert [lesson["id"] for lesson in by_course.json()["results"]] == enrolled.lesson_ids
    not_mine = await client.get(
        "/api/lessons/", params={"course": other.id}, headers=student.headers
    )
    assert not_mine.status_code == 200 and not_mine.json()["count"] == 0

    one = await client.get(f"/api/lessons/{enrolled.lesson_ids[0]}/", headers=student.headers)
    assert one.status_code == 200, one.text
    assert one.json()["content"] == "Content 1"
    # By id, a lesson of a published course is readable whether enrolled or not (the list is
    # the filtered view).
    by_id = await client.get(f"/api/lessons/{other.lesson_ids[0]}/", headers=student.headers)
    assert by_id.status_code == 200 and by_id.json()["course"] == other.id
