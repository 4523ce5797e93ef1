"""Operational endpoints (/healthz, /readyz, JWKS), the offline docs, and what clients see when a
backend is down. Gateways with other backend targets run on their own ports for these cases."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import jwt
import pytest

from libs.embedded import free_port
from libs.settings import Settings
from libs.signing_keys import JWKS_FILE
from tests.conftest import TEST_PASSWORD, User, assert_error_body, serve_asgi, unique_email


@asynccontextmanager
async def gateway_with(settings: Settings, **targets: str) -> AsyncIterator[httpx.AsyncClient]:
    """A second real gateway whose backend targets are overridden (e.g. pointed at a dead port)."""
    from gateway.app import create_app

    async with (
        serve_asgi(create_app(settings.model_copy(update=targets))) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        yield http


def backend_targets() -> list[str]:
    return [name for name in Settings.model_fields if name.endswith("_target")]


def dead_target() -> str:
    return f"127.0.0.1:{free_port()}"  # nothing listens there


# Health and readiness ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz/", "/healthz"])
async def test_healthz(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_readyz_reflects_the_backends(
    client: httpx.AsyncClient, services: dict[str, str]
) -> None:
    response = await client.get("/readyz")
    statuses = response.json()["backends"]
    for name in services:
        if name in statuses:
            assert statuses[name] == "SERVING", statuses
    all_serving = all(status == "SERVING" for status in statuses.values())
    assert response.status_code == (200 if all_serving else 503), response.text


async def test_readyz_is_200_when_every_backend_serves(
    settings: Settings, services: dict[str, str]
) -> None:
    # Every backend target points at a live gRPC server (identity answers health for all).
    targets = dict.fromkeys(backend_targets(), services["identity"])
    async with gateway_with(settings, **targets) as gateway:
        response = await gateway.get("/readyz/")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["backends"] and set(body["backends"].values()) == {"SERVING"}


async def test_readyz_is_503_naming_the_backend_that_is_down(
    settings: Settings, services: dict[str, str]
) -> None:
    targets = dict.fromkeys(backend_targets(), services["identity"])
    targets["identity_target"] = dead_target()
    async with gateway_with(settings, **targets) as gateway:
        response = await gateway.get("/readyz/")
    body = assert_error_body(response, 503)
    assert body["backends"]["identity"] == "UNAVAILABLE"
    assert all(
        status == "SERVING" for name, status in body["backends"].items() if name != "identity"
    )


async def test_backend_down_is_503_with_contract_body(settings: Settings) -> None:
    async with gateway_with(settings, identity_target=dead_target()) as gateway:
        register = await gateway.post(
            "/api/register/",
            json={
                "email": unique_email("down"),
                "full_name": "Nobody Home",
                "role": "Student",
                "password": TEST_PASSWORD,
                "password_confirm": TEST_PASSWORD,
            },
        )
        login = await gateway.post(
            "/api/auth/login/", json={"email": "a@example.com", "password": TEST_PASSWORD}
        )
    for response in (register, login):
        body = assert_error_body(response, 503)
        assert body["message"] == "A backend service is unavailable."
        assert body["errors"] == {}


async def test_gateway_verifies_tokens_while_identity_is_down(
    settings: Settings, student: User
) -> None:
    """Token checks use the published keys, not a call to identity."""
    async with gateway_with(settings, identity_target=dead_target()) as gateway:
        verify = await gateway.post("/api/token/verify/", json={"token": student.access})
        me = await gateway.get("/api/users/me/", headers=student.headers)
        bad = await gateway.get("/api/users/me/", headers={"Authorization": "Bearer x.y.z"})
    assert (verify.status_code, verify.json()) == (200, {})
    assert_error_body(me, 503)  # authenticated, but the data lives in identity
    assert_error_body(bad, 401)  # refused before any backend is asked


# JWKS -------------------------------------------------------------------------------------------


async def test_jwks_publishes_the_public_keys(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert "max-age" in response.headers["cache-control"]
    document = response.json()
    assert document == json.loads((settings.jwt_keys_dir / JWKS_FILE).read_text())
    for key in document["keys"]:
        assert key["kid"] and key["kty"] == "OKP" and key["alg"] == "EdDSA"
        assert "d" not in key


async def test_jwks_verifies_a_real_access_token(
    client: httpx.AsyncClient, settings: Settings, student: User
) -> None:
    """What an outside verifier would do: pick the key by kid and check the signature."""
    keys = {key["kid"]: key for key in (await client.get("/.well-known/jwks.json")).json()["keys"]}
    kid = jwt.get_unverified_header(student.access)["kid"]
    public_key = jwt.PyJWK(keys[kid]).key
    claims = jwt.decode(
        student.access,
        public_key,
        algorithms=["EdDSA"],
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )
    assert (claims["sub"], claims["typ"], claims["role"]) == (str(student.id), "access", "Student")
    assert claims["email"] == student.email


# Docs -------------------------------------------------------------------------------------------

EXTERNAL_ASSET = re.compile(r"""(?:src|href)=["'](?:https?:)?//""")


@pytest.mark.parametrize("path", ["/api/docs/", "/api/docs", "/redoc/", "/redoc"])
async def test_docs_render_without_internet(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert not EXTERNAL_ASSET.search(page), "docs must not load assets from a CDN"
    # Every script and stylesheet the page names is served by the gateway itself.
    assets = re.findall(r"""(?:src|href)=["'](/[^"']+\.(?:js|css))["']""", page)
    assert assets
    for asset in assets:
        assert (await client.get(asset)).status_code == 200, asset


async def test_schema_documents_routes_and_bearer_auth(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/api/schema/")).json()
    for path in (
        "/api/register/",
        "/api/user/register/",
        "/api/auth/login/",
        "/api/token/refresh/",
        "/api/token/verify/",
        "/api/auth/logout/",
        "/api/users/me/",
    ):
        assert path in schema["paths"], path
    schemes = schema["components"]["securitySchemes"]
    assert any(s.get("type") == "http" and s.get("scheme") == "bearer" for s in schemes.values())
    register = schema["paths"]["/api/register/"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/x-www-form-urlencoded"} <= set(register)


async def test_every_schema_reference_resolves(client: httpx.AsyncClient) -> None:
    """A dangling $ref (bulk_create's item model once pointed at a missing component) breaks
    Swagger UI's form for that route and every client generator."""
    raw = (await client.get("/api/schema/")).text
    schema = json.loads(raw)
    components = schema["components"]["schemas"]
    references = set(re.findall(r'"\$ref":\s*"([^"]+)"', raw))
    assert references
    for reference in references:
        assert reference.startswith("#/components/schemas/"), reference
        assert reference.removeprefix("#/components/schemas/") in components, reference
    bulk = schema["paths"]["/api/lessons/bulk_create/"]["post"]["requestBody"]["content"]
    item = bulk["application/json"]["schema"]["properties"]["lessons"]["items"]
    assert set(item["required"]) == {"title", "content", "order"}


async def test_schema_documents_the_contract_error_body(client: httpx.AsyncClient) -> None:
    """Errors are documented as the contract's body; FastAPI's 422 (never sent) is not.
    (Which statuses each route documents: tests/test_gateway_openapi.py.)"""
    schema = (await client.get("/api/schema/")).json()
    assert set(schema["components"]["schemas"]["ErrorBody"]["properties"]) == {
        "error",
        "message",
        "errors",
    }
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "422" not in responses, (method, path)
            for status, answer in responses.items():
                if int(status) < 400 or (path, status) == ("/readyz/", "503"):
                    continue
                body = answer["content"]["application/json"]["schema"]
                assert body == {"$ref": "#/components/schemas/ErrorBody"}, (method, path)
