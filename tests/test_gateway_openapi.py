"""The served OpenAPI document (/api/schema/) tells the truth about each route.

Every status a route is documented with is one it can answer, and every answer it gives to the
probes below (no token, the wrong role, a bad body, an unknown id) is documented; /readyz/
documents its 503; the operational routes have real examples instead of `null` samples.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.conftest import User

PROBE_ID = "9223372036854775807"  # a valid id no test creates: not found (or not yours)


async def served_schema(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/api/schema/")
    assert response.status_code == 200
    return response.json()


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]


def documented(operation: dict[str, Any]) -> set[int]:
    return {int(status) for status in operation["responses"]}


async def test_each_answer_to_a_probe_is_documented(
    client: httpx.AsyncClient, student: User, instructor: User
) -> None:
    schema = await served_schema(client)
    seen: dict[int, int] = {}
    for method, template, operation in operations(schema):
        path = re.sub(r"\{[^}]+\}", PROBE_ID, template)
        has_body = "requestBody" in operation
        probes: list[dict[str, Any]] = [{}, {"headers": student.headers}]
        probes.append({"headers": instructor.headers})
        if has_body:
            probes += [
                {"headers": instructor.headers, "json": {"no_such_field": 1}},
                {"headers": student.headers, "content": b"{", "type": "application/json"},
                {"headers": student.headers, "content": b"x", "type": "text/plain"},
            ]
        for probe in probes:
            headers = dict(probe.get("headers", {}))
            if "type" in probe:
                headers["content-type"] = probe["type"]
            response = await client.request(
                method, path, headers=headers, json=probe.get("json"), content=probe.get("content")
            )
            assert response.status_code in documented(operation), (
                method,
                template,
                probe,
                response.status_code,
                response.text,
            )
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
    # The probes reached the interesting answers, so the check above had something to check.
    assert {400, 401, 403, 404, 415} <= set(seen), seen


async def test_statuses_follow_what_each_route_is_made_of(client: httpx.AsyncClient) -> None:
    schema = await served_schema(client)
    for method, path, operation in operations(schema):
        statuses = documented(operation)
        where = (method, path)
        assert 422 not in statuses, where
        # 401 only where a token is needed (or a credential is the body), 403 only with a role.
        needs_token = bool(operation.get("security"))
        credential_route = path in ("/api/auth/login/", "/api/token/refresh/", "/api/token/verify/")
        assert (401 in statuses) == (needs_token or credential_route), where
        assert (413 in statuses) == (415 in statuses) == ("requestBody" in operation), where
        if not path.startswith(("/api/", "/.well-known/")):
            assert statuses <= {200, 503}, where
    responses = schema["paths"]["/healthz/"]["get"]["responses"]
    assert set(responses) == {"200"}
    for path in ("/api/courses/", "/api/users/me/", "/api/lessons/"):
        assert 403 not in documented(schema["paths"][path]["get"]), path
    for path in ("/api/enrollments/", "/api/progress/"):
        assert 403 in documented(schema["paths"][path]["get"]), path  # students only
    assert 404 not in documented(schema["paths"]["/api/users/me/"]["get"])
    assert 404 in documented(schema["paths"]["/api/courses/{course_id}/"]["get"])


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    reference = node.get("$ref")
    if reference is None:
        return node
    return schema["components"]["schemas"][reference.removeprefix("#/components/schemas/")]


def example_of(schema: dict[str, Any], node: dict[str, Any]) -> Any:
    """What ReDoc shows: the schema's own example, else one built from its properties."""
    node = resolve(schema, node)
    if "examples" in node:
        return node["examples"][0]
    if node.get("type") == "array":
        return [example_of(schema, node["items"])]
    properties = node.get("properties")
    if properties is None:
        return None
    return {name: example_of(schema, prop) for name, prop in properties.items()}


async def test_readyz_documents_its_503_and_real_examples(client: httpx.AsyncClient) -> None:
    schema = await served_schema(client)
    responses = schema["paths"]["/readyz/"]["get"]["responses"]
    assert set(responses) == {"200", "503"}
    ready = example_of(schema, responses["200"]["content"]["application/json"]["schema"])
    assert ready == {"status": "ready", "backends": pytest.approx(ready["backends"])}
    assert set(ready["backends"]) == {"identity", "catalog", "learning"}
    not_ready = example_of(schema, responses["503"]["content"]["application/json"]["schema"])
    assert not_ready["error"] is True and "UNAVAILABLE" in not_ready["backends"].values()
    # The examples look like what the route answers.
    answer = (await client.get("/readyz/")).json()
    assert set(answer) == set(ready) and set(answer["backends"]) == set(ready["backends"])


async def test_jwks_documents_a_real_key(client: httpx.AsyncClient) -> None:
    schema = await served_schema(client)
    responses = schema["paths"]["/.well-known/jwks.json"]["get"]["responses"]
    sample = example_of(schema, responses["200"]["content"]["application/json"]["schema"])
    served = (await client.get("/.well-known/jwks.json")).json()
    assert set(sample) == set(served) == {"keys"}
    key = sample["keys"][0]
    assert key["kty"] == "OKP" and key["alg"] == "EdDSA" and key["x"]
    assert set(served["keys"][0]) <= set(key)


async def test_read_only_fields_are_flagged_for_every_resource(client: httpx.AsyncClient) -> None:
    """Swagger UI leaves readOnly fields out of request examples; progress and enrollment
    bodies once lost the flag."""
    schema = await served_schema(client)
    components = schema["components"]["schemas"]
    expected = {
        "CourseOut": {"title", "short_description"},
        "LessonOut": {"title", "content", "order"},
        "EnrollmentOut": {"course"},
        "EnrollmentDetailOut": {"course"},
        "ProgressOut": {"completed"},
    }
    for name, writable in expected.items():
        properties = components[name]["properties"]
        flagged = {field for field, spec in properties.items() if spec.get("readOnly")}
        assert flagged == set(properties) - writable, name
    bodies = {
        ("put", "/api/courses/{course_id}/"): {"title", "short_description"},
        ("patch", "/api/courses/{course_id}/"): {"title", "short_description"},
        ("post", "/api/courses/"): {"title", "short_description"},
        ("put", "/api/lessons/{lesson_id}/"): {"title", "content", "order"},
        ("patch", "/api/lessons/{lesson_id}/"): {"title", "content", "order"},
        ("post", "/api/lessons/"): {"title", "content", "order", "course"},
        ("post", "/api/enrollments/"): {"course"},
        ("put", "/api/progress/{progress_id}/"): {"completed"},
        ("patch", "/api/progress/{progress_id}/"): {"completed"},
    }
    for (method, path), writable in bodies.items():
        body = schema["paths"][path][method]["requestBody"]["content"]["application/json"]
        properties = body["schema"]["properties"]
        flagged = {field for field, spec in properties.items() if spec.get("readOnly")}
        assert set(properties) - flagged == writable, (method, path)
        assert flagged, (method, path)
