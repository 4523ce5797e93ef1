"""Gateway behaviour shared by every route: the contract's error body for every failure, bodies
(JSON strict, form lenient, malformed, too large), trailing slashes, request ids."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from gateway.bodies import MAX_DEPTH, nesting_depth, null_character_errors
from gateway.errors import rpc_error_response
from gateway.middleware import client_request_id
from libs.settings import Settings
from tests.conftest import TEST_PASSWORD, User, assert_error_body, unique_email

GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


def registration(**changes: object) -> dict[str, object]:
    return {
        "email": unique_email("gw"),
        "full_name": "Edsger Dijkstra",
        "role": "Student",
        "password": TEST_PASSWORD,
        "password_confirm": TEST_PASSWORD,
        **changes,
    }


# Every failure has the contract body --------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/nothing-here/"),
        ("GET", "/api/nothing-here"),
        ("POST", "/api/nothing-here/"),
        ("DELETE", "/nowhere"),
        ("GET", "/"),
        ("GET", "/api/"),
        ("GET", "/file.json"),
    ],
)
async def test_unknown_route_is_404_with_contract_body(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path)
    body = assert_error_body(response, 404)
    assert body == {"error": True, "message": "Not found.", "errors": {}}
    assert response.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/api/register/", "POST"),
        ("PUT", "/api/auth/login", "POST"),
        ("DELETE", "/api/token/refresh/", "POST"),
        ("POST", "/api/users/me/", "GET"),
        ("POST", "/healthz", "GET"),
    ],
)
async def test_wrong_method_is_405_with_contract_body(
    client: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    response = await client.request(method, path)
    body = assert_error_body(response, 405)
    assert body["message"] == "Method not allowed."
    assert allowed in response.headers["allow"]


async def test_401_is_contract_body_with_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/users/me/")
    body = assert_error_body(response, 401)
    assert body["message"] == "Authentication credentials were not provided."
    assert response.headers["www-authenticate"] == "Bearer"


# Request bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b'{"email": "a@example.com",}',
        b"{'email': 'a@example.com'}",
        b"\xff\xfe\x00",
        b'{"email": "\\ud800"}',
        b"NaN",
        b"[" * 5000,
    ],
)
async def test_malformed_json_is_400(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post(
        "/api/auth/login/", content=raw, headers={"content-type": "application/json"}
    )
    body = assert_error_body(response, 400, "non_field_errors")
    assert body["message"] == "Malformed JSON in request body."


@pytest.mark.parametrize("raw", [b"[]", b'"text"', b"42", b"null", b"true"])
async def test_json_that_is_not_an_object_is_400(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post(
        "/api/auth/login/", content=raw, headers={"content-type": "application/json"}
    )
    assert assert_error_body(response, 400, "non_field_errors")["errors"] == {
        "non_field_errors": ["Expected a JSON object."]
    }


async def test_empty_body_names_the_required_fields(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/login/", content=b"")
    body = assert_error_body(response, 400)
    assert body["errors"] == {
        "email": ["This field is required."],
        "password": ["This field is required."],
    }


async def test_wrong_json_types_are_400_per_field(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/register/",
        json=registration(email=["a@example.com"], full_name={"first": "A"}, role=5),
    )
    body = assert_error_body(response, 400)
    assert {"email", "full_name", "role"} <= set(body["errors"])


async def test_unknown_fields_are_named(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/auth/login/", json={"email": "a@example.com", "password": "x", "passwrod": "x"}
    )
    body = assert_error_body(response, 400, "passwrod")
    assert body["errors"]["passwrod"] == ["Unknown field."]


async def test_form_and_multipart_bodies_are_accepted(client: httpx.AsyncClient) -> None:
    urlencoded = await client.post("/api/register/", data=registration())
    assert urlencoded.status_code == 201, urlencoded.text
    multipart = await client.post(
        "/api/register/", data=registration(), files={"unused": ("", b"")}
    )
    # The empty file part is an unknown field: a form is validated like JSON, by name.
    assert_error_body(multipart, 400, "unused")
    fields = {key: (None, str(value)) for key, value in registration().items()}
    multipart = await client.post("/api/register/", files=fields)
    assert multipart.status_code == 201, multipart.text


async def test_form_unknown_and_missing_fields(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/register/", data={"email": "a@example.com", "role": "Student", "nickname": "x"}
    )
    body = assert_error_body(response, 400)
    assert body["errors"]["nickname"] == ["Unknown field."]
    assert body["errors"]["password"] == ["This field is required."]


async def test_null_characters_are_refused_by_name(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/register/", json=registration(full_name="Ed\x00sger"))
    body = assert_error_body(response, 400, "full_name")
    assert body["errors"]["full_name"] == ["Null characters are not allowed."]
    response = await client.post(
        "/api/auth/login/", json={"email": "a\x00@example.com", "password": "x"}
    )
    assert_error_body(response, 400, "email")
    response = await client.post("/api/auth/login/", data={"email": "a\x00b", "password": "x"})
    assert_error_body(response, 400, "email")


@pytest.mark.parametrize(
    "raw",
    [
        # Within orjson's 1,024 levels, but past what a recursive walk survives: was a 500
        # (RecursionError) whose logged traceback held the gateway's event loop for seconds.
        b'{"email": ' + b"[" * 1000 + b"]" * 1000 + b', "password": "x"}',
        b'{"nickname": ' + b'{"a": ' * 1000 + b"1" + b"}" * 1000 + b"}",
        b'{"email": ' + b"[" * 33 + b"]" * 33 + b', "password": "x"}',
    ],
)
async def test_deeply_nested_json_is_400(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post(
        "/api/auth/login/", content=raw, headers={"content-type": "application/json"}
    )
    body = assert_error_body(response, 400, "non_field_errors")
    assert body["errors"]["non_field_errors"] == ["The request body is nested too deeply."]


def test_nesting_depth_counts_objects_and_lists() -> None:
    assert nesting_depth({}) == 1
    assert nesting_depth({"course": 1, "lessons": [{"title": "a"}]}) == 3
    assert nesting_depth({"a": [[[]]], "b": 1}) == 4
    deep: list[object] = []
    for _ in range(5000):
        deep = [deep]
    assert nesting_depth({"x": deep}) == MAX_DEPTH + 1  # stops counting past the limit


def test_null_character_errors_name_nested_fields() -> None:
    data = {"course": 1, "lessons": [{"title": "ok"}, {"title": "b\x00d", "order": 2}], "x": "\x00"}
    assert null_character_errors(data) == {
        "lessons.1.title": ["Null characters are not allowed."],
        "x": ["Null characters are not allowed."],
    }
    assert null_character_errors({"a": ["fine", 1, None, True]}) == {}


async def test_declared_body_over_the_limit_is_413(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    response = await client.post(
        "/api/register/",
        content=b"x" * (settings.max_body_bytes + 1),
        headers={"content-type": "application/json"},
    )
    assert assert_error_body(response, 413)["message"] == "Request body is too large."


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
async def test_streamed_body_over_the_limit_is_413(
    client: httpx.AsyncClient, settings: Settings, content_type: str
) -> None:
    chunk = b"a" * 65536

    async def chunks() -> AsyncIterator[bytes]:
        # No Content-Length: the limit has to be enforced while reading.
        for _ in range(settings.max_body_bytes // len(chunk) + 2):
            yield chunk

    response = await client.post(
        "/api/auth/login/", content=chunks(), headers={"content-type": content_type}
    )
    assert_error_body(response, 413)


async def test_body_just_under_the_limit_is_read(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # Valid JSON padded with whitespace to the limit: parsed, then judged on its fields.
    payload = b'{"email": "a@example.com"}'
    raw = payload + b" " * (settings.max_body_bytes - len(payload))
    response = await client.post(
        "/api/auth/login/", content=raw, headers={"content-type": "application/json"}
    )
    assert_error_body(response, 400, "password")


# Trailing slashes -------------------------------------------------------------------------------


async def test_every_route_answers_with_and_without_its_slash(client: httpx.AsyncClient) -> None:
    """Checked on every path the gateway documents, so routes added later are covered too."""
    schema = (await client.get("/api/schema/")).json()
    checked = 0
    for template, operations in schema["paths"].items():
        if not template.endswith("/"):
            continue
        path = re.sub(r"\{[^}]+\}", "1", template)
        for method in ("get", "post"):
            if method not in operations:
                continue
            with_slash = await client.request(method, path)
            without = await client.request(method, path.rstrip("/"))
            assert without.status_code == with_slash.status_code, (method, path, without.text)
            assert without.status_code not in (307, 308)
            if with_slash.headers.get("content-type", "").startswith("application/json"):
                assert without.json() == with_slash.json(), (method, path)
            checked += 1
    assert checked >= 8


async def test_no_redirects_for_the_other_spelling(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/register", json=registration())
    assert response.status_code == 201
    assert not response.history


# Ids in paths -----------------------------------------------------------------------------------


async def test_bad_ids_in_paths_are_4xx(client: httpx.AsyncClient, student: User) -> None:
    paths = (await client.get("/api/schema/")).json()["paths"]
    if not any(path.startswith("/api/courses/{") for path in paths):
        pytest.skip("no catalog routes in the gateway yet")
    for bad in ("abc", "1.5", "-1", "0", "99999999999999999999999", "9223372036854775808", "%00"):
        response = await client.get(f"/api/courses/{bad}/", headers=student.headers)
        assert 400 <= response.status_code < 500, (bad, response.text)
        assert_error_body(response, response.status_code)


# Request ids ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz/", 200),
        ("POST", "/api/auth/login/", 400),
        ("GET", "/api/users/me/", 401),
        ("GET", "/api/nothing/", 404),
        ("PUT", "/api/register/", 405),
    ],
)
async def test_request_id_comes_back(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    request_id = "client-chosen-id.123:abc"
    response = await client.request(method, path, headers={"X-Request-ID": request_id})
    assert response.status_code == status
    assert response.headers["x-request-id"] == request_id


async def test_request_id_on_an_answer_from_the_backend(
    client: httpx.AsyncClient, student: User
) -> None:
    response = await client.get(
        "/api/users/me/", headers={**student.headers, "X-Request-ID": "trace-me-42"}
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "trace-me-42"


async def test_request_id_on_413(client: httpx.AsyncClient, settings: Settings) -> None:
    response = await client.post(
        "/api/register/",
        content=b"x" * (settings.max_body_bytes + 1),
        headers={"X-Request-ID": "too-big-1"},
    )
    assert response.status_code == 413
    assert response.headers["x-request-id"] == "too-big-1"


async def test_request_id_is_made_when_missing(client: httpx.AsyncClient) -> None:
    first = (await client.get("/healthz/")).headers["x-request-id"]
    second = (await client.get("/healthz/")).headers["x-request-id"]
    assert GENERATED_ID.match(first) and GENERATED_ID.match(second)
    assert first != second


@pytest.mark.parametrize(
    "raw",
    ["caf\xe9".encode("latin-1"), b"a\tb", b"has space", b"x" * 129],
)
async def test_unusable_request_id_is_replaced_not_fatal(
    client: httpx.AsyncClient, student: User, raw: bytes
) -> None:
    # The id is forwarded as gRPC metadata, which takes visible ASCII only.
    response = await client.get("/api/users/me/", headers={**student.headers, "X-Request-ID": raw})
    assert response.status_code == 200, response.text
    assert GENERATED_ID.match(response.headers["x-request-id"])


def test_client_request_id_rules() -> None:
    assert client_request_id(b"abc-123") == "abc-123"
    assert client_request_id(b"x" * 128) == "x" * 128
    assert client_request_id(b"x" * 129) is None
    assert client_request_id(b"") is None
    assert client_request_id(b"a b") is None
    assert client_request_id("é".encode()) is None


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (grpc.StatusCode.INTERNAL, 500),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
    ],
)
async def test_transport_failures_do_not_leak_grpc_text(code: grpc.StatusCode, status: int) -> None:
    """gRPC's own failures (message too large, crashes, timeouts) say things about internals."""
    leaked = "Received message larger than max (5000000 vs. 4194304)"
    error = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=leaked)
    response = await rpc_error_response(None, error)  # type: ignore[arg-type]
    assert response.status_code == status
    body = json.loads(response.body)
    assert body["error"] is True and body["errors"] == {}
    assert "larger" not in body["message"] and body["message"]
