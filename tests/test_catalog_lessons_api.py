"""Every Lessons row of CONTRACT.md through the gateway over HTTP."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.conftest import User, assert_error_body, register_and_login

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
LESSON_KEYS = {"id", "title", "content", "order", "course", "created_at", "updated_at"}


@pytest.fixture
async def other_instructor(client: httpx.AsyncClient) -> User:
    return await register_and_login(client, "Instructor")


async def create_course(client: httpx.AsyncClient, owner: User, publish: bool = False) -> int:
    response = await client.post(
        "/api/courses/",
        json={"title": "Lessons course", "short_description": "d"},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    course_id: int = response.json()["id"]
    if publish:
        published = await client.post(f"/api/courses/{course_id}/publish/", headers=owner.headers)
        assert published.status_code == 200, published.text
    return course_id


async def create_lesson(
    client: httpx.AsyncClient, owner: User, course_id: int, order: int, title: str = "Lesson"
) -> dict[str, Any]:
    response = await client.post(
        "/api/lessons/",
        json={"course": course_id, "title": title, "content": "Some content", "order": order},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    return response.json()


async def lessons_of(client: httpx.AsyncClient, user: User, course_id: int) -> list[dict]:
    response = await client.get(f"/api/lessons/?course={course_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    return response.json()["results"]


async def test_create_in_own_course(client: httpx.AsyncClient, instructor: User) -> None:
    course_id = await create_course(client, instructor)
    lesson = await create_lesson(client, instructor, course_id, 1, "Welcome")
    assert set(lesson) == LESSON_KEYS
    assert (lesson["course"], lesson["title"], lesson["order"]) == (course_id, "Welcome", 1)
    assert lesson["content"] == "Some content"
    assert TIMESTAMP.match(lesson["created_at"]) and TIMESTAMP.match(lesson["updated_at"])
    course = (await client.get(f"/api/courses/{course_id}/", headers=instructor.headers)).json()
    assert course["lesson_count"] == 1
    assert course["lessons"] == [lesson]


async def test_create_in_another_instructors_course(
    client: httpx.AsyncClient, instructor: User, other_instructor: User
) -> None:
    published = await create_course(client, instructor, publish=True)
    draft = await create_course(client, instructor)
    body = {"title": "t", "content": "c", "order": 1}
    response = await client.post(
        "/api/lessons/", json={**body, "course": published}, headers=other_instructor.headers
    )
    assert_error_body(response, 403)
    # A draft stays hidden: it looks like an unknown course.
    response = await client.post(
        "/api/lessons/", json={**body, "course": draft}, headers=other_instructor.headers
    )
    assert_error_body(response, 404)
    assert await lessons_of(client, instructor, published) == []


async def test_student_cannot_create_lessons(
    client: httpx.AsyncClient, instructor: User, student: User
) -> None:
    course_id = await create_course(client, instructor, publish=True)
    response = await client.post(
        "/api/lessons/",
        json={"course": course_id, "title": "t", "content": "c", "order": 1},
        headers=student.headers,
    )
    assert_error_body(response, 403)
    response = await client.post(
        "/api/lessons/bulk_create/",
        json={"course": course_id, "lessons": [{"title": "t", "content": "c", "order": 1}]},
        headers=student.headers,
    )
    assert_error_body(response, 403)


async def test_unknown_and_missing_course(client: httpx.AsyncClient, instructor: User) -> None:
    body = {"title": "t", "content": "c", "order": 1}
    response = await client.post(
        "/api/lessons/", json={**body, "course": 987654321}, headers=instructor.headers
    )
    assert_error_body(response, 404)
    response = await client.post("/api/lessons/", json=body, headers=instructor.headers)
    assert_error_body(response, 400, "course")


async def test_order_taken(client: httpx.AsyncClient, instructor: User) -> None:
    course_id = await create_course(client, instructor)
    await create_lesson(client, instructor, course_id, 1)
    response = await client.post(
        "/api/lessons/",
        json={"course": course_id, "title": "again", "content": "c", "order": 1},
        headers=instructor.headers,
    )
    assert_error_body(response, 400, "order")
    assert len(await lessons_of(client, instructor, course_id)) == 1


async def test_same_order_in_different_courses(client: httpx.AsyncClient, instructor: User) -> None:
    first, second = await create_course(client, instructor), await create_course(client, instructor)
    await create_lesson(client, instructor, first, 1)
    await create_lesson(client, instructor, second, 1)


async def test_list_by_course_is_ordered_by_order(
    client: httpx.AsyncClient, instructor: User
) -> None:
    course_id = await create_course(client, instructor)
    for order in (3, 1, 2):
        await create_lesson(client, instructor, course_id, order, f"L{order}")
    lessons = await lessons_of(client, instructor, course_id)
    assert [lesson["order"] for lesson in lessons] == [1, 2, 3]
    assert [lesson["title"] for lesson in lessons] == ["L1", "L2", "L3"]


async def test_instructor_lists_only_own_lessons_by_course_then_order(
    client: httpx.AsyncClient, other_instructor: User
) -> None:
    owner = await register_and_login(client, "Instructor")
    first = await create_course(client, owner, publish=True)
    second = await create_course(client, owner)
    await create_lesson(client, owner, second, 2)
    await create_lesson(client, owner, first, 2)
    await create_lesson(client, owner, second, 1)
    await create_lesson(client, owner, first, 1)
    response = await client.get("/api/lessons/", headers=owner.headers)
    body = response.json()
    assert body["count"] == 4
    assert [(x["course"], x["order"]) for x in body["results"]] == [
        (first, 1),
        (first, 2),
        (second, 1),
        (second, 2),
    ]
    # Someone else's published course is not among another instructor's lessons.
    assert await lessons_of(client, other_instructor, first) == []


async def test_lesson_list_paginates(client: httpx.AsyncClient) -> None:
    owner = await register_and_login(client, "Instructor")
    course_id = await create_course(client, owner)
    for order in range(1, 4):
        await create_lesson(client, owner, course_id, order)
    page = await client.get(
        f"/api/lessons/?course={course_id}&page_size=2&page=2", headers=owner.headers
    )
    body = page.json()
    assert body["count"] == 3
    assert [lesson["order"] for lesson in body["results"]] == [3]
    assert body["next"] is None and "page=1" in body["previous"]
    assert "course=" in body["previous"]
    response = await client.get(
        f"/api/lessons/?course={course_id}&page_size=2&page=3", headers=owner.headers
    )
    assert_error_body(response, 404)


async def test_bulk_create(client: httpx.AsyncClient, instructor: User) -> None:
    course_id = await create_course(client, instructor)
    response = await client.post(
        "/api/lessons/bulk_create/",
        json={
            "course": course_id,
            "lessons": [
                {"title": "Two", "content": "c2", "order": 2},
                {"title": "One", "content": "c1", "order": 1},
            ],
        },
        headers=instructor.headers,
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert isinstance(created, list) and len(created) == 2
    assert all(set(lesson) == LESSON_KEYS and lesson["course"] == course_id for lesson in created)
    assert {(x["title"], x["order"]) for x in created} == {("One", 1), ("Two", 2)}
    assert [x["order"] for x in await lessons_of(client, instructor, course_id)] == [1, 2]


@pytest.mark.parametrize(
    "orders", [pytest.param([4, 5, 4], id="repeated"), pytest.param([4, 1], id="taken")]
)
async def test_bulk_create_is_all_or_nothing(
    client: httpx.AsyncClient, instructor: User, orders: list[int]
) -> None:
    course_id = await create_course(client, instructor)
    await create_lesson(client, instructor, course_id, 1)
    response = await client.post(
        "/api/lessons/bulk_create/",
        json={
            "course": course_id,
            "lessons": [{"title": f"L{n}", "content": "c", "order": n} for n in orders],
        },
        headers=instructor.headers,
    )
    body = assert_error_body(response, 400, "lessons")
    assert any(str(orders[-1]) in message for message in body["errors"]["lessons"])
    assert [x["order"] for x in await lessons_of(client, instructor, course_id)] == [1]


async def test_bulk_create_with_every_lesson_invalid_names_each(
    client: httpx.AsyncClient, instructor: User
) -> None:
    """500 blank lessons: the catalog's 500 field errors outgrew gRPC's 16 KiB metadata limit
    on the way back, and the client got a 429 quoting gRPC internals instead of this 400."""
    course_id = await create_course(client, instructor)
    lessons = [{"title": " ", "content": "", "order": n} for n in range(1, 501)]
    response = await client.post(
        "/api/lessons/bulk_create/",
        json={"course": course_id, "lessons": lessons},
        headers=instructor.headers,
    )
    body = assert_error_body(response, 400, "lessons.499.title")
    assert "lessons.0.title" in body["errors"]
    assert await lessons_of(client, instructor, course_id) == []


async def test_bulk_create_needs_lessons(client: httpx.AsyncClient, instructor: User) -> None:
    course_id = await create_course(client, instructor)
    response = await client.post(
        "/api/lessons/bulk_create/",
        json={"course": course_id, "lessons": []},
        headers=instructor.headers,
    )
    assert_error_body(response, 400, "lessons")
    response = await client.post(
        "/api/lessons/bulk_create/", json={"lessons": []}, headers=instructor.headers
    )
    assert_error_body(response, 400, "course")


async def test_bulk_create_in_another_instructors_course(
    client: httpx.AsyncClient, instructor: User, other_instructor: User
) -> None:
    course_id = await create_course(client, instructor, publish=True)
    response = await client.post(
        "/api/lessons/bulk_create/",
        json={"course": course_id, "lessons": [{"title": "t", "content": "c", "order": 1}]},
        headers=other_instructor.headers,
    )
    assert_error_body(response, 403)


async def test_read_update_delete_by_owner(client: httpx.AsyncClient, instructor: User) -> None:
    course_id = await create_course(client, instructor)
    lesson = await create_lesson(client, instructor, course_id, 1)
    url = f"/api/lessons/{lesson['id']}/"
    assert (await client.get(url, headers=instructor.headers)).json() == lesson

    response = await client.put(
        url,
        json={"title": "Renamed", "content": "New content", "order": 5},
        headers=instructor.headers,
    )
    assert response.status_code == 200, response.text
    assert (response.json()["title"], response.json()["order"]) == ("Renamed", 5)
    response = await client.patch(url, json={"content": "Patched"}, headers=instructor.headers)
    assert response.status_code == 200, response.text
    assert (response.json()["content"], response.json()["title"]) == ("Patched", "Renamed")
    # Clients PUT what they GET: course and timestamps unchanged are fine.
    current = response.json()
    response = await client.put(url, json={**current, "order": 6}, headers=instructor.headers)
    assert response.status_code == 200, response.text
    assert response.json()["order"] == 6

    response = await client.delete(url, headers=instructor.headers)
    assert response.status_code == 204
    assert_error_body(await client.get(url, headers=instructor.headers), 404)
    assert await lessons_of(client, instructor, course_id) == []
    # A deleted lesson frees its order.
    await create_lesson(client, instructor, course_id, 6)


async def test_lesson_does_not_move_to_another_course(
    client: httpx.AsyncClient, instructor: User
) -> None:
    course_id, other_course = (
        await create_course(client, instructor),
        await create_course(client, instructor),
    )
    lesson = await create_lesson(client, instructor, course_id, 1)
    url = f"/api/lessons/{lesson['id']}/"
    for field, value in (("course", other_course), ("id", 1), ("created_at", "2020")):
        response = await client.patch(url, json={field: value}, headers=instructor.headers)
        assert_error_body(response, 400, field)
    assert (await client.get(url, headers=instructor.headers)).json()["course"] == course_id


async def test_update_to_a_taken_order(client: httpx.AsyncClient, instructor: User) -> None:
    course_id = await create_course(client, instructor)
    await create_lesson(client, instructor, course_id, 1)
    second = await create_lesson(client, instructor, course_id, 2)
    response = await client.patch(
        f"/api/lessons/{second['id']}/", json={"order": 1}, headers=instructor.headers
    )
    assert_error_body(response, 400, "order")


async def test_only_the_owner_writes_lessons(
    client: httpx.AsyncClient, instructor: User, other_instructor: User, student: User
) -> None:
    course_id = await create_course(client, instructor, publish=True)
    lesson = await create_lesson(client, instructor, course_id, 1)
    url = f"/api/lessons/{lesson['id']}/"
    put_body = {"title": "x", "content": "y", "order": 2}
    for user in (other_instructor, student):
        assert_error_body(await client.patch(url, json={"title": "x"}, headers=user.headers), 403)
        assert_error_body(await client.put(url, json=put_body, headers=user.headers), 403)
        assert_error_body(await client.delete(url, headers=user.headers), 403)
    assert (await client.get(url, headers=instructor.headers)).json() == lesson


async def test_another_instructors_draft_lesson_is_hidden(
    client: httpx.AsyncClient, instructor: User, other_instructor: User
) -> None:
    course_id = await create_course(client, instructor)
    lesson = await create_lesson(client, instructor, course_id, 1)
    url = f"/api/lessons/{lesson['id']}/"
    assert_error_body(await client.get(url, headers=other_instructor.headers), 404)
    assert_error_body(
        await client.patch(url, json={"title": "x"}, headers=other_instructor.headers), 404
    )


async def test_student_lists_no_lessons_of_courses_they_are_not_enrolled_in(
    client: httpx.AsyncClient, instructor: User, student: User
) -> None:
    course_id = await create_course(client, instructor, publish=True)
    lesson = await create_lesson(client, instructor, course_id, 1)
    for url in ("/api/lessons/", f"/api/lessons/?course={course_id}"):
        response = await client.get(url, headers=student.headers)
        assert response.status_code == 200, response.text
        assert course_id not in {x["course"] for x in response.json()["results"]}
    # Read by id it is the published course's content, public to signed-in users.
    by_id = await client.get(f"/api/lessons/{lesson['id']}/", headers=student.headers)
    assert by_id.status_code == 200 and by_id.json() == lesson
    # The published course itself (with its syllabus) stays visible to students.
    course = await client.get(f"/api/courses/{course_id}/", headers=student.headers)
    assert course.status_code == 200 and course.json()["lesson_count"] == 1


async def test_unknown_lesson_is_404(client: httpx.AsyncClient, instructor: User) -> None:
    assert_error_body(await client.get("/api/lessons/987654321/", headers=instructor.headers), 404)
    response = await client.patch(
        "/api/lessons/987654321/", json={"title": "x"}, headers=instructor.headers
    )
    assert_error_body(response, 404)
    assert_error_body(
        await client.delete("/api/lessons/987654321/", headers=instructor.headers), 404
    )
