"""Bad input on the Courses and Lessons routes: always a clear 4xx with the contract's error
body, naming the field, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import User, assert_error_body


@pytest.fixture
async def course_id(client: httpx.AsyncClient, instructor: User) -> int:
    response = await client.post(
        "/api/courses/",
        json={"title": "Bad input", "short_description": "d"},
        headers=instructor.headers,
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": "x" * 256, "short_description": "d"}, "title"),
        ({"title": "t", "short_description": "x" * 501}, "short_description"),
        ({"title": "   ", "short_description": "d"}, "title"),
        ({"title": "", "short_description": "d"}, "title"),
        ({"short_description": "d"}, "title"),
        ({"title": 5, "short_description": "d"}, "title"),
        ({"title": None, "short_description": "d"}, "title"),
        ({"title": "a\x00b", "short_description": "d"}, "title"),
        ({"titel": "typo", "title": "t", "short_description": "d"}, "titel"),
    ],
)
async def test_bad_course_bodies(
    client: httpx.AsyncClient, instructor: User, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/api/courses/", json=body, headers=instructor.headers)
    assert_error_body(response, 400, field)


async def test_limits_are_inclusive(client: httpx.AsyncClient, instructor: User) -> None:
    response = await client.post(
        "/api/courses/",
        json={"title": "x" * 255, "short_description": "y" * 500},
        headers=instructor.headers,
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": "x" * 256}, "title"),
        ({"title": ""}, "title"),
        ({"title": None}, "title"),
        ({"short_description": ["list"]}, "short_description"),
        ({"unknown": 1}, "unknown"),
    ],
)
async def test_bad_course_patches(
    client: httpx.AsyncClient, instructor: User, course_id: int, body: dict, field: str
) -> None:
    response = await client.patch(
        f"/api/courses/{course_id}/", json=body, headers=instructor.headers
    )
    assert_error_body(response, 400, field)


@pytest.mark.parametrize(
    "order", [0, -1, "3", 1.5, True, None, 2**31, 2**70], ids=lambda value: repr(value)[:12]
)
async def test_bad_orders(
    client: httpx.AsyncClient, instructor: User, course_id: int, order: Any
) -> None:
    body = {"course": course_id, "title": "t", "content": "c", "order": order}
    response = await client.post("/api/lessons/", json=body, headers=instructor.headers)
    assert_error_body(response, 400, "order")


async def test_bad_order_in_a_form_body(
    client: httpx.AsyncClient, instructor: User, course_id: int
) -> None:
    body = {"course": str(course_id), "title": "t", "content": "c", "order": "first"}
    response = await client.post("/api/lessons/", data=body, headers=instructor.headers)
    assert_error_body(response, 400, "order")


async def test_form_lesson_create(
    client: httpx.AsyncClient, instructor: User, course_id: int
) -> None:
    body = {"course": str(course_id), "title": "t", "content": "c", "order": "1"}
    response = await client.post("/api/lessons/", data=body, headers=instructor.headers)
    assert response.status_code == 201, response.text
    assert response.json()["order"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"course": "abc", "title": "t", "content": "c", "order": 1}, "course"),
        ({"course": 0, "title": "t", "content": "c", "order": 1}, "course"),
        ({"course": 2**64, "title": "t", "content": "c", "order": 1}, "course"),
        ({"title": "t", "content": "c", "order": 1}, "course"),
        ({"title": "x" * 256, "content": "c", "order": 1}, "title"),
        ({"title": "t", "content": "   ", "order": 1}, "content"),
        ({"title": "t", "content": "c" * 100_001, "order": 1}, "content"),
        ({"title": "t", "order": 1}, "content"),
        ({"title": "t", "content": "c", "order": 1, "position": 1}, "position"),
    ],
)
async def test_bad_lesson_bodies(
    client: httpx.AsyncClient,
    instructor: User,
    course_id: int,
    body: dict[str, Any],
    field: str,
) -> None:
    body = {"course": course_id, **body} if "course" not in body and field != "course" else body
    response = await client.post("/api/lessons/", json=body, headers=instructor.headers)
    assert_error_body(response, 400, field)


@pytest.mark.parametrize(
    ("lessons", "field"),
    [
        ("not a list", "lessons"),
        ([{"title": "t", "content": "c"}], "lessons.0.order"),
        (
            [{"title": "t", "content": "c", "order": 1}, {"content": "c", "order": 2}],
            "lessons.1.title",
        ),
        ([{"title": "t", "content": "c", "order": 0}], "lessons.0.order"),
        ([{"title": "x" * 256, "content": "c", "order": 1}], "lessons.0.title"),
        ([{"title": "t", "content": "c", "order": 1, "extra": 1}], "lessons.0.extra"),
        ([{"title": "t", "content": "c", "order": n} for n in range(1, 502)], "lessons"),
    ],
)
async def test_bad_bulk_bodies(
    client: httpx.AsyncClient, instructor: User, course_id: int, lessons: Any, field: str
) -> None:
    response = await client.post(
        "/api/lessons/bulk_create/",
        json={"course": course_id, "lessons": lessons},
        headers=instructor.headers,
    )
    assert_error_body(response, 400, field)
    listed = await client.get(f"/api/lessons/?course={course_id}", headers=instructor.headers)
    assert listed.json()["count"] == 0


@pytest.mark.parametrize(
    "query", ["page_size=101", "page_size=100000000000", "page_size=0", "page=0", "page=abc"]
)
async def test_bad_paging(client: httpx.AsyncClient, instructor: User, query: str) -> None:
    for route in ("/api/courses/", "/api/lessons/"):
        response = await client.get(f"{route}?{query}", headers=instructor.headers)
        assert_error_body(response, 400, query.split("=")[0])


@pytest.mark.parametrize("course", ["abc", "0", "-1", str(2**64)])
async def test_bad_course_filter(client: httpx.AsyncClient, instructor: User, course: str) -> None:
    response = await client.get(f"/api/lessons/?course={course}", headers=instructor.headers)
    assert_error_body(response, 400, "course")


@pytest.mark.parametrize("resource_id", ["abc", "1.5", "0", "-3", str(2**64), "1e3"])
async def test_non_integer_ids_in_the_path(
    client: httpx.AsyncClient, instructor: User, resource_id: str
) -> None:
    headers = instructor.headers
    for url in (f"/api/courses/{resource_id}/", f"/api/lessons/{resource_id}/"):
        assert_error_body(await client.get(url, headers=headers), 404)
        assert_error_body(await client.patch(url, json={"title": "x"}, headers=headers), 404)
        assert_error_body(await client.delete(url, headers=headers), 404)
    response = await client.post(f"/api/courses/{resource_id}/publish/", headers=headers)
    assert_error_body(response, 404)


async def test_malformed_json(client: httpx.AsyncClient, instructor: User) -> None:
    headers = {**instructor.headers, "Content-Type": "application/json"}
    for route in ("/api/courses/", "/api/lessons/", "/api/lessons/bulk_create/"):
        response = await client.post(route, content=b'{"title": ', headers=headers)
        assert_error_body(response, 400)
        response = await client.post(route, content=b"[1, 2]", headers=headers)
        assert_error_body(response, 400)


async def test_wrong_method_is_405(client: httpx.AsyncClient, instructor: User) -> None:
    assert_error_body(await client.put("/api/courses/", json={}, headers=instructor.headers), 405)
    # bulk_create is a path of its own (POST), not a lesson id.
    response = await client.get("/api/lessons/bulk_create/", headers=instructor.headers)
    assert_error_body(response, 405)
    assert response.headers["allow"] == "POST, OPTIONS"
