"""Every Courses row of CONTRACT.md through the gateway over HTTP: both roles and a second
instructor, visibility, ownership, read-only fields, publishing, soft delete, pagination."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from tests.conftest import User, assert_error_body, register_and_login

CODE = re.compile(r"^COURSE-\d{4,}$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
COURSE_KEYS = {
    "id",
    "code",
    "title",
    "short_description",
    "instructor",
    "instructor_name",
    "status",
    "lesson_count",
    "lessons",
    "created_at",
    "updated_at",
}


@pytest.fixture
async def other_instructor(client: httpx.AsyncClient) -> User:
    return await register_and_login(client, "Instructor")


async def create_course(
    client: httpx.AsyncClient, owner: User, title: str = "Intro to Rust", **extra: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/courses/",
        json={"title": title, "short_description": "Ownership and borrowing", **extra},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    return response.json()


async def publish(client: httpx.AsyncClient, owner: User, course_id: int) -> None:
    response = await client.post(f"/api/courses/{course_id}/publish/", headers=owner.headers)
    assert response.status_code == 200, response.text


async def listed_ids(client: httpx.AsyncClient, user: User) -> list[int]:
    """Every course id the user's listing shows, following `next` across pages."""
    ids: list[int] = []
    url: str | None = "/api/courses/?page_size=100"
    while url:
        response = await client.get(url, headers=user.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        ids += [course["id"] for course in body["results"]]
        url = body["next"]
    return ids


async def test_instructor_creates_a_draft_with_a_code(
    client: httpx.AsyncClient, instructor: User
) -> None:
    course = await create_course(client, instructor)
    assert set(course) == COURSE_KEYS
    assert CODE.match(course["code"])
    assert course["status"] == "draft"
    assert course["instructor"] == instructor.id
    assert course["instructor_name"] == instructor.full_name
    assert (course["lesson_count"], course["lessons"]) == (0, [])
    assert TIMESTAMP.match(course["created_at"]) and TIMESTAMP.match(course["updated_at"])
    fetched = await client.get(f"/api/courses/{course['id']}/", headers=instructor.headers)
    assert fetched.json() == course


async def test_create_ignores_read_only_fields(client: httpx.AsyncClient, instructor: User) -> None:
    course = await create_course(client, instructor, status="published", code="MINE-1")
    assert course["status"] == "draft"
    assert CODE.match(course["code"])


async def test_form_encoded_create(client: httpx.AsyncClient, instructor: User) -> None:
    response = await client.post(
        "/api/courses",
        data={"title": "Form course", "short_description": "from a form"},
        headers=instructor.headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["title"] == "Form course"


async def test_student_cannot_create(client: httpx.AsyncClient, student: User) -> None:
    response = await client.post(
        "/api/courses/", json={"title": "t", "short_description": "d"}, headers=student.headers
    )
    assert_error_body(response, 403)


async def test_anonymous_is_401(client: httpx.AsyncClient) -> None:
    assert_error_body(await client.get("/api/courses/"), 401)
    assert_error_body(
        await client.post("/api/courses/", json={"title": "t", "short_description": "d"}), 401
    )


async def test_listings_follow_the_role(
    client: httpx.AsyncClient, instructor: User, other_instructor: User, student: User
) -> None:
    draft = await create_course(client, instructor, "draft")
    published = await create_course(client, instructor, "published")
    await publish(client, instructor, published["id"])
    others = await create_course(client, other_instructor, "someone else's draft")

    assert sorted(await listed_ids(client, instructor)) == sorted([draft["id"], published["id"]])
    assert await listed_ids(client, other_instructor) == [others["id"]]
    seen_by_student = await listed_ids(client, student)
    assert published["id"] in seen_by_student
    assert draft["id"] not in seen_by_student
    assert others["id"] not in seen_by_student


async def test_list_is_newest_first_and_nests_lessons(
    client: httpx.AsyncClient, instructor: User
) -> None:
    first = await create_course(client, instructor, "first")
    second = await create_course(client, instructor, "second")
    response = await client.post(
        "/api/lessons/bulk_create/",
        json={
            "course": first["id"],
            "lessons": [{"title": f"L{n}", "content": "c", "order": n} for n in (2, 1)],
        },
        headers=instructor.headers,
    )
    assert response.status_code == 201, response.text
    body = (await client.get("/api/courses/", headers=instructor.headers)).json()
    assert [course["id"] for course in body["results"]] == [second["id"], first["id"]]
    listed_first = body["results"][1]
    assert listed_first["lesson_count"] == 2
    assert [lesson["order"] for lesson in listed_first["lessons"]] == [1, 2]
    assert all(lesson["course"] == first["id"] for lesson in listed_first["lessons"])


async def test_get_visibility(
    client: httpx.AsyncClient, instructor: User, other_instructor: User, student: User
) -> None:
    draft = await create_course(client, instructor)
    url = f"/api/courses/{draft['id']}/"
    assert (await client.get(url, headers=instructor.headers)).status_code == 200
    assert_error_body(await client.get(url, headers=student.headers), 404)
    assert_error_body(await client.get(url, headers=other_instructor.headers), 404)
    await publish(client, instructor, draft["id"])
    for user in (student, other_instructor):
        response = await client.get(url, headers=user.headers)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "published"
    assert_error_body(await client.get("/api/courses/999999999/", headers=student.headers), 404)


async def test_owner_updates_with_put_and_patch(
    client: httpx.AsyncClient, instructor: User
) -> None:
    course = await create_course(client, instructor)
    url = f"/api/courses/{course['id']}/"
    response = await client.put(
        url,
        json={"title": "New title", "short_description": "New text"},
        headers=instructor.headers,
    )
    assert response.status_code == 200, response.text
    assert (response.json()["title"], response.json()["short_description"]) == (
        "New title",
        "New text",
    )
    response = await client.patch(url, json={"title": "Patched"}, headers=instructor.headers)
    assert response.status_code == 200, response.text
    assert (response.json()["title"], response.json()["short_description"]) == (
        "Patched",
        "New text",
    )
    assert response.json()["updated_at"] >= course["updated_at"]
    # An empty PATCH changes nothing and answers the course.
    response = await client.patch(url, json={}, headers=instructor.headers)
    assert response.status_code == 200 and response.json()["title"] == "Patched"


async def test_put_needs_every_writable_field(client: httpx.AsyncClient, instructor: User) -> None:
    course = await create_course(client, instructor)
    response = await client.put(
        f"/api/courses/{course['id']}/", json={"title": "only"}, headers=instructor.headers
    )
    assert_error_body(response, 400, "short_description")


async def test_clients_put_what_they_get(client: httpx.AsyncClient, instructor: User) -> None:
    course = await create_course(client, instructor)
    url = f"/api/courses/{course['id']}/"
    response = await client.put(
        url, json={**course, "title": "Round trip"}, headers=instructor.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["title"] == "Round trip"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("code", "COURSE-9999"),
        ("status", "published"),
        ("instructor", 123456),
        ("instructor_name", "Someone Else"),
        ("lesson_count", 7),
        ("lessons", [{"id": 1, "title": "smuggled"}]),
        ("id", 1),
        ("created_at", "2020-01-01T00:00:00.000000Z"),
    ],
)
async def test_read_only_fields_cannot_change(
    client: httpx.AsyncClient, instructor: User, field: str, value: Any
) -> None:
    course = await create_course(client, instructor)
    url = f"/api/courses/{course['id']}/"
    body = assert_error_body(
        await client.patch(url, json={field: value}, headers=instructor.headers), 400, field
    )
    assert set(body["errors"]) == {field}
    unchanged = await client.get(url, headers=instructor.headers)
    assert unchanged.json()["status"] == "draft"
    assert unchanged.json()["code"] == course["code"]


async def test_only_the_owner_changes_a_course(
    client: httpx.AsyncClient, instructor: User, other_instructor: User, student: User
) -> None:
    course = await create_course(client, instructor)
    await publish(client, instructor, course["id"])
    url = f"/api/courses/{course['id']}/"
    for user in (other_instructor, student):
        assert_error_body(await client.patch(url, json={"title": "x"}, headers=user.headers), 403)
        assert_error_body(
            await client.put(
                url, json={"title": "x", "short_description": "y"}, headers=user.headers
            ),
            403,
        )
        assert_error_body(await client.delete(url, headers=user.headers), 403)
        assert_error_body(await client.post(f"{url}publish/", headers=user.headers), 403)
    assert (await client.get(url, headers=instructor.headers)).json()["title"] == course["title"]


async def test_another_instructors_draft_does_not_leak(
    client: httpx.AsyncClient, instructor: User, other_instructor: User
) -> None:
    draft = await create_course(client, instructor)
    url = f"/api/courses/{draft['id']}/"
    headers = other_instructor.headers
    assert_error_body(await client.patch(url, json={"title": "x"}, headers=headers), 404)
    assert_error_body(await client.delete(url, headers=headers), 404)
    assert_error_body(await client.post(f"{url}publish/", headers=headers), 404)


async def test_publish_once(client: httpx.AsyncClient, instructor: User) -> None:
    course = await create_course(client, instructor)
    url = f"/api/courses/{course['id']}/publish/"
    response = await client.post(url, headers=instructor.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "Course published successfully"}
    assert_error_body(await client.post(url, headers=instructor.headers), 400, "status")
    assert_error_body(await client.patch(url, headers=instructor.headers), 400, "status")
    fetched = await client.get(f"/api/courses/{course['id']}", headers=instructor.headers)
    assert fetched.json()["status"] == "published"


async def test_publish_with_patch(client: httpx.AsyncClient, instructor: User) -> None:
    course = await create_course(client, instructor)
    response = await client.patch(
        f"/api/courses/{course['id']}/publish", headers=instructor.headers
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "Course published successfully"}


async def test_student_publish_is_403(
    client: httpx.AsyncClient, instructor: User, student: User
) -> None:
    course = await create_course(client, instructor)
    response = await client.post(f"/api/courses/{course['id']}/publish/", headers=student.headers)
    assert_error_body(response, 403)


async def test_soft_delete(client: httpx.AsyncClient, instructor: User, student: User) -> None:
    course = await create_course(client, instructor)
    lesson = await client.post(
        "/api/lessons/",
        json={"course": course["id"], "title": "L1", "content": "c", "order": 1},
        headers=instructor.headers,
    )
    assert lesson.status_code == 201, lesson.text
    await publish(client, instructor, course["id"])
    url = f"/api/courses/{course['id']}/"

    response = await client.delete(url, headers=instructor.headers)
    assert response.status_code == 204
    assert response.content == b""
    for user in (instructor, student):
        assert_error_body(await client.get(url, headers=user.headers), 404)
        assert course["id"] not in await listed_ids(client, user)
    assert_error_body(
        await client.get(f"/api/lessons/{lesson.json()['id']}/", headers=instructor.headers), 404
    )
    assert_error_body(await client.delete(url, headers=instructor.headers), 404)
    assert_error_body(await client.post(f"{url}publish/", headers=instructor.headers), 404)

    # Codes are never reused: the next course gets a higher number.
    newer = await create_course(client, instructor)
    assert int(newer["code"].split("-")[1]) > int(course["code"].split("-")[1])


async def test_pagination(client: httpx.AsyncClient) -> None:
    owner = await register_and_login(client, "Instructor")
    ids = [(await create_course(client, owner, f"c{n}"))["id"] for n in range(3)]
    first = await client.get("/api/courses/?page_size=2", headers=owner.headers)
    body = first.json()
    assert body["count"] == 3
    assert [course["id"] for course in body["results"]] == ids[::-1][:2]
    assert body["previous"] is None
    assert body["next"].startswith("http://") and "page=2" in body["next"]

    second = await client.get(body["next"], headers=owner.headers)
    body = second.json()
    assert [course["id"] for course in body["results"]] == [ids[0]]
    assert body["next"] is None
    assert body["previous"].startswith("http://") and "page=1" in body["previous"]

    assert_error_body(
        await client.get("/api/courses/?page=3&page_size=2", headers=owner.headers), 404
    )


async def test_empty_first_page_is_not_404(client: httpx.AsyncClient) -> None:
    owner = await register_and_login(client, "Instructor")
    response = await client.get("/api/courses/", headers=owner.headers)
    assert response.status_code == 200
    assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}


async def test_course_larger_than_grpc_default_message_is_readable(
    client: httpx.AsyncClient, instructor: User, student: User
) -> None:
    """Eleven lessons of 100,000 four-byte characters (legal, each under the body limit) make a
    4.4 MB course: past gRPC's default 4 MiB receive limit, which answered the course, the
    owner's list and every student's course list with a 429, and enrollment with a 503."""
    course = await create_course(client, instructor, title="Emoji heavy")
    content = "\N{GRINNING FACE}" * 100_000
    for order in range(1, 12):
        body = {"course": course["id"], "title": f"L{order}", "content": content, "order": order}
        response = await client.post(
            "/api/lessons/",
            content=json.dumps(body, ensure_ascii=False).encode(),
            headers={**instructor.headers, "content-type": "application/json"},
        )
        assert response.status_code == 201, response.text
    response = await client.get(f"/api/courses/{course['id']}/", headers=instructor.headers)
    assert response.status_code == 200, response.text[:300]
    assert [lesson["content"] for lesson in response.json()["lessons"]] == [content] * 11
    await publish(client, instructor, course["id"])
    assert course["id"] in await listed_ids(client, instructor)
    response = await client.get("/api/courses/", headers=student.headers)
    assert response.status_code == 200, response.text[:300]
    response = await client.post(
        "/api/enrollments/", json={"course": course["id"]}, headers=student.headers
    )
    assert response.status_code == 201, response.text[:300]
