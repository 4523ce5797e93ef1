"""Odd input gets the contract's answer: pages past the end, methods (405 Allow, HEAD,
OPTIONS), ids in paths decided before the body, form booleans, media types, and characters no
title, name or description may hold (over REST and direct gRPC alike)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from courseplatform.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from courseplatform.identity.v1 import identity_pb2, identity_pb2_grpc

from libs.grpc_errors import decode_rpc_error
from libs.roles import ROLE_TO_PROTO
from libs.text import BIDI_CONTROL, CONTROL
from tests.conftest import TEST_PASSWORD, User, assert_error_body, unique_email
from tests.learning_support import enroll, progress_rows, published_course

# Pages past the end ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "page", ["2", "1000000", "1000001", "2147483647", "2147483648", "9" * 40, "9" * 5000, "0003"]
)
async def test_any_page_past_the_end_is_404(
    client: httpx.AsyncClient, instructor: User, page: str
) -> None:
    # A fresh instructor has no courses: page 1 is an empty page, every later page is past it.
    response = await client.get(f"/api/courses/?page={page}", headers=instructor.headers)
    assert_error_body(response, 404)


@pytest.mark.parametrize("route", ["/api/lessons/", "/api/enrollments/", "/api/progress/"])
async def test_huge_page_is_404_on_every_list(
    client: httpx.AsyncClient, student: User, route: str
) -> None:
    response = await client.get(f"{route}?page=1000001", headers=student.headers)
    assert_error_body(response, 404)


@pytest.mark.parametrize(
    "query", ["page=0", "page=-1", "page=1.5", "page=abc", "page=", "page_size=101", "page_size=0"]
)
async def test_bad_paging_is_still_400(
    client: httpx.AsyncClient, instructor: User, query: str
) -> None:
    response = await client.get(f"/api/courses/?{query}", headers=instructor.headers)
    assert_error_body(response, 400)


async def test_last_page_is_served_and_the_next_is_404(
    client: httpx.AsyncClient, instructor: User
) -> None:
    for n in range(3):
        created = await client.post(
            "/api/courses/",
            json={"title": f"Paged {n}", "short_description": "d"},
            headers=instructor.headers,
        )
        assert created.status_code == 201
    last = await client.get("/api/courses/?page=2&page_size=2", headers=instructor.headers)
    assert last.status_code == 200 and len(last.json()["results"]) == 1
    assert last.json()["next"] is None
    assert_error_body(
        await client.get("/api/courses/?page=3&page_size=2", headers=instructor.headers), 404
    )


# Methods: 405 with the full Allow, HEAD, OPTIONS -----------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/api/courses/1/", "GET, HEAD, PUT, PATCH, DELETE, OPTIONS"),
        ("GET", "/api/register/", "POST, OPTIONS"),
        ("DELETE", "/api/courses/", "GET, HEAD, POST, OPTIONS"),
        ("PUT", "/api/lessons/bulk_create/", "POST, OPTIONS"),
        ("GET", "/api/courses/1/publish", "POST, PATCH, OPTIONS"),
        ("POST", "/api/docs/", "GET, HEAD, OPTIONS"),
    ],
)
async def test_405_lists_every_method_of_the_path(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await client.request(method, path, json={"title": 5})
    assert_error_body(response, 405)
    assert response.headers.get_list("allow") == [allow]


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/api/courses/1/", "GET, HEAD, PUT, PATCH, DELETE, OPTIONS"),
        ("/api/courses", "GET, HEAD, POST, OPTIONS"),
        ("/api/auth/login/", "POST, OPTIONS"),
        ("/healthz/", "GET, HEAD, OPTIONS"),
    ],
)
async def test_options_is_204_with_allow(client: httpx.AsyncClient, path: str, allow: str) -> None:
    response = await client.options(path)
    assert response.status_code == 204
    assert response.headers["allow"] == allow
    assert response.content == b""


async def test_options_on_an_unknown_path_is_404(client: httpx.AsyncClient) -> None:
    assert_error_body(await client.options("/api/nothing-here/"), 404)
    assert_error_body(await client.options("/api/courses/abc/"), 404)


@pytest.mark.parametrize(
    "path", ["/healthz/", "/api/schema/", "/api/docs/", "/static-offline-docs/swagger-ui.css"]
)
async def test_head_is_get_without_the_body(client: httpx.AsyncClient, path: str) -> None:
    get = await client.get(path)
    head = await client.head(path)
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == get.headers["content-length"]


async def test_head_on_an_authenticated_route(client: httpx.AsyncClient, student: User) -> None:
    get = await client.get("/api/users/me/", headers=student.headers)
    head = await client.head("/api/users/me/", headers=student.headers)
    assert head.status_code == get.status_code == 200
    assert head.content == b"" and head.headers["content-length"] == get.headers["content-length"]
    assert (await client.head("/api/users/me/")).status_code == 401


async def test_head_where_no_get_is_405(client: httpx.AsyncClient) -> None:
    response = await client.head("/api/register/")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST, OPTIONS"


# Ids in paths before bodies --------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["abc", "0", "01", "-1", "1.5", "9223372036854775808", "%00"])
async def test_bad_id_is_404_before_the_body_is_read(
    client: httpx.AsyncClient, instructor: User, bad: str
) -> None:
    for raw in (b'{"title": 5, "nope": 1}', b"{"):
        response = await client.patch(
            f"/api/courses/{bad}/",
            content=raw,
            headers={**instructor.headers, "content-type": "application/json"},
        )
        assert assert_error_body(response, 404)["errors"] == {}, response.text


async def test_bad_id_is_404_even_without_a_token(client: httpx.AsyncClient) -> None:
    assert_error_body(await client.patch("/api/lessons/abc/", content=b"{"), 404)


async def test_largest_id_is_routed(client: httpx.AsyncClient, instructor: User) -> None:
    response = await client.get("/api/courses/9223372036854775807/", headers=instructor.headers)
    assert assert_error_body(response, 404)["message"] == "Course not found."


# Form booleans ----------------------------------------------------------------------------------


@pytest.fixture
async def open_progress(client: httpx.AsyncClient, instructor: User, student: User) -> int:
    course = await published_course(client, instructor, lessons=2)
    enrollment = await enroll(client, student, course.id)
    return (await progress_rows(client, student, enrollment["id"]))[0]["id"]


@pytest.mark.parametrize("value", ["yes", "on", "1", "True", "t", "y", ""])
async def test_form_booleans_are_only_true_or_false(
    client: httpx.AsyncClient, student: User, open_progress: int, value: str
) -> None:
    for method in ("PUT", "PATCH"):
        response = await client.request(
            method,
            f"/api/progress/{open_progress}/",
            data={"completed": value},
            headers=student.headers,
        )
        body = assert_error_body(response, 400, "completed")
        assert body["errors"] == {"completed": ["Must be true or false."]}


async def test_form_true_completes(
    client: httpx.AsyncClient, student: User, open_progress: int
) -> None:
    response = await client.patch(
        f"/api/progress/{open_progress}/", data={"completed": "true"}, headers=student.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["completed"] is True


# Media types ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "text/plain;charset=UTF-8", "application/xml", "application/jsonx", None],
)
async def test_write_routes_need_json_or_a_form(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    # The cross-site "simple request" a browser sends without asking: a JSON body as text/plain.
    raw = (
        b'{"email": "%s", "full_name": "Mallory", "role": "Student", '
        b'"password": "%s", "password_confirm": "%s"}'
        % (unique_email("csrf").encode(), TEST_PASSWORD.encode(), TEST_PASSWORD.encode())
    )
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/api/register/", content=raw, headers=headers)
    body = assert_error_body(response, 415)
    assert body["message"].startswith("Unsupported media type")


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
async def test_json_with_or_without_charset_is_read(
    client: httpx.AsyncClient, content_type: str
) -> None:
    response = await client.post(
        "/api/auth/login/",
        content=b'{"email": "nobody@example.com", "password": "wrong-password"}',
        headers={"content-type": content_type},
    )
    assert_error_body(response, 401)


async def test_posts_without_a_body_still_work(
    client: httpx.AsyncClient, instructor: User, student: User
) -> None:
    course = await published_course(client, instructor, lessons=1, publish=False)
    published = await client.post(
        f"/api/courses/{course.id}/publish/",
        headers={**instructor.headers, "content-type": "text/plain"},
    )
    assert published.status_code == 200, published.text
    enrollment = await enroll(client, student, course.id)
    progress = (await progress_rows(client, student, enrollment["id"]))[0]["id"]
    completed = await client.post(f"/api/progress/{progress}/complete/", headers=student.headers)
    assert completed.status_code == 200, completed.text


# Control and bidi characters ------------------------------------------------------------------

BAD_TEXT = [("\u0001", CONTROL), ("\u202e", BIDI_CONTROL), ("\u2066", BIDI_CONTROL)]
SINGLE_LINE_BAD = [*BAD_TEXT, ("\n", CONTROL), ("\t", CONTROL), ("\x7f", CONTROL)]


@pytest.mark.parametrize(("char", "message"), SINGLE_LINE_BAD)
@pytest.mark.parametrize("field", ["title", "short_description"])
async def test_course_text_refuses_control_and_bidi_characters(
    client: httpx.AsyncClient, instructor: User, field: str, char: str, message: str
) -> None:
    body = {"title": "Fine", "short_description": "Fine", field: f"Evil{char}gnp.exe"}
    response = await client.post("/api/courses/", json=body, headers=instructor.headers)
    assert assert_error_body(response, 400, field)["errors"] == {field: [message]}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("title", "Tab\tbed", CONTROL),
        ("title", "Over\u202dride", BIDI_CONTROL),
        ("content", "bell\u0007", CONTROL),
        ("content", "lone\rreturn", CONTROL),
        ("content", "isolate\u2069", BIDI_CONTROL),
    ],
)
async def test_lesson_text_refuses_control_and_bidi_characters(
    client: httpx.AsyncClient, instructor: User, field: str, value: str, message: str
) -> None:
    course = await published_course(client, instructor, lessons=0, publish=False)
    lesson = {"course": course.id, "title": "T", "content": "C", "order": 1, field: value}
    response = await client.post("/api/lessons/", json=lesson, headers=instructor.headers)
    assert assert_error_body(response, 400, field)["errors"] == {field: [message]}
    bulk = {"course": course.id, "lessons": [{k: v for k, v in lesson.items() if k != "course"}]}
    response = await client.post("/api/lessons/bulk_create/", json=bulk, headers=instructor.headers)
    assert assert_error_body(response, 400)["errors"] == {f"lessons.0.{field}": [message]}


async def test_lesson_content_keeps_tabs_and_newlines(
    client: httpx.AsyncClient, instructor: User
) -> None:
    course = await published_course(client, instructor, lessons=0, publish=False)
    content = "Step 1:\n\tread\r\nStep 2:\n\twrite \u05e9\u05dc\u05d5\u05dd \u200f(RTL)"
    response = await client.post(
        "/api/lessons/",
        json={"course": course.id, "title": "Formatted", "content": content, "order": 1},
        headers=instructor.headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["content"] == content


async def test_updates_refuse_them_too(client: httpx.AsyncClient, instructor: User) -> None:
    course = await published_course(client, instructor, lessons=1, publish=False)
    response = await client.patch(
        f"/api/courses/{course.id}/", json={"title": "A\u202eB"}, headers=instructor.headers
    )
    assert assert_error_body(response, 400, "title")["errors"] == {"title": [BIDI_CONTROL]}
    response = await client.patch(
        f"/api/lessons/{course.lesson_ids[0]}/",
        json={"content": "x\x1b[2J"},
        headers=instructor.headers,
    )
    assert assert_error_body(response, 400, "content")["errors"] == {"content": [CONTROL]}


@pytest.mark.parametrize(("char", "message"), SINGLE_LINE_BAD)
async def test_full_name_refuses_control_and_bidi_characters(
    client: httpx.AsyncClient, char: str, message: str
) -> None:
    body = {
        "email": unique_email("bidi"),
        "full_name": f"Ann{char}Smith",
        "role": "Student",
        "password": TEST_PASSWORD,
        "password_confirm": TEST_PASSWORD,
    }
    response = await client.post("/api/register/", json=body)
    assert assert_error_body(response, 400, "full_name")["errors"] == {"full_name": [message]}


@pytest.fixture
async def catalog(services: dict[str, str]) -> AsyncIterator[catalog_pb2_grpc.CatalogServiceStub]:
    async with grpc.aio.insecure_channel(services["catalog"]) as channel:
        yield catalog_pb2_grpc.CatalogServiceStub(channel)


@pytest.fixture
async def identity(
    services: dict[str, str],
) -> AsyncIterator[identity_pb2_grpc.IdentityServiceStub]:
    async with grpc.aio.insecure_channel(services["identity"]) as channel:
        yield identity_pb2_grpc.IdentityServiceStub(channel)


async def invalid_argument(call: object) -> dict[str, list[str]]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return decode_rpc_error(caught.value).field_errors


async def test_direct_grpc_refuses_them_with_field_violations(
    catalog: catalog_pb2_grpc.CatalogServiceStub,
    identity: identity_pb2_grpc.IdentityServiceStub,
    instructor: User,
) -> None:
    metadata = (("authorization", f"Bearer {instructor.access}"),)
    errors = await invalid_argument(
        catalog.CreateCourse(
            catalog_pb2.CreateCourseRequest(title="A\u202eB", short_description="C\u0001D"),
            metadata=metadata,
        )
    )
    assert errors == {"title": [BIDI_CONTROL], "short_description": [CONTROL]}
    course = await catalog.CreateCourse(
        catalog_pb2.CreateCourseRequest(title="Clean", short_description="Clean"),
        metadata=metadata,
    )
    errors = await invalid_argument(
        catalog.CreateLesson(
            catalog_pb2.CreateLessonRequest(
                course_id=course.course.id,
                lesson=catalog_pb2.NewLesson(title="T\u2067", content="C\u0000", order=1),
            ),
            metadata=metadata,
        )
    )
    assert set(errors) == {"title", "content"}
    errors = await invalid_argument(
        identity.Register(
            identity_pb2.RegisterRequest(
                email=unique_email("grpc-bidi"),
                full_name="Ann\u202eSmith",
                role=ROLE_TO_PROTO["Student"],
                password=TEST_PASSWORD,
                password_confirm=TEST_PASSWORD,
            )
        )
    )
    assert errors == {"full_name": [BIDI_CONTROL]}
