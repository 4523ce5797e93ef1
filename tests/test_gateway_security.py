"""Security headers on every gateway answer, no server banner, no-store on token answers, and
malformed HTTP answered with the contract's body; the CSP lets the docs pages load what they
reference."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from urllib.parse import urlsplit

import httpx
import pytest

from gateway.security import inline_script_hashes
from libs.settings import Settings
from tests.conftest import TEST_PASSWORD, User, assert_error_body, serve_asgi, unique_email

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def csp_of(response: httpx.Response) -> dict[str, list[str]]:
    policy: dict[str, list[str]] = {}
    for directive in response.headers["content-security-policy"].split(";"):
        name, *sources = directive.split()
        policy[name] = sources
    return policy


def assert_security_headers(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get_list(name) == [value], (name, response.headers)
    policy = csp_of(response)
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["default-src"] == ["'self'"]
    assert "'unsafe-inline'" not in policy["script-src"]
    assert "'unsafe-eval'" not in policy["script-src"]
    assert "server" not in response.headers


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz/", 200),
        ("GET", "/api/docs/", 200),
        ("GET", "/redoc/", 200),
        ("GET", "/api/schema/", 200),
        ("GET", "/static-offline-docs/redoc.standalone.js", 200),
        ("HEAD", "/healthz/", 200),
        ("OPTIONS", "/api/courses/", 204),
        ("POST", "/api/auth/login/", 400),
        ("GET", "/api/users/me/", 401),
        ("GET", "/api/nothing-here/", 404),
        ("GET", "/api/courses/abc/", 404),
        ("DELETE", "/api/register/", 405),
    ],
)
async def test_every_answer_carries_the_security_headers(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path)
    assert response.status_code == status
    assert_security_headers(response)


async def test_413_and_415_carry_them_too(client: httpx.AsyncClient, settings: Settings) -> None:
    too_large = await client.post(
        "/api/register/",
        content=b"x" * (settings.max_body_bytes + 1),
        headers={"content-type": "application/json"},
    )
    assert too_large.status_code == 413
    assert_security_headers(too_large)
    wrong_type = await client.post("/api/register/", content=b"{}")
    assert wrong_type.status_code == 415
    assert_security_headers(wrong_type)


async def test_an_answer_from_the_backend_carries_them(
    client: httpx.AsyncClient, student: User
) -> None:
    response = await client.get("/api/users/me/", headers=student.headers)
    assert response.status_code == 200
    assert_security_headers(response)


async def test_a_500_carries_them_too(settings: Settings, services: dict[str, str]) -> None:
    """Starlette answers an unhandled error outside the user middleware; the headers wrap
    the whole stack."""
    from gateway.app import create_app
    from gateway.serving import uvicorn_options

    app = create_app(settings)

    async def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/boom/", boom)
    async with serve_asgi(app, **uvicorn_options()) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.get("/boom/")
    assert_error_body(response, 500)
    assert_security_headers(response)


# Tokens are never stored by a cache ----------------------------------------------------------


async def test_token_answers_are_no_store(client: httpx.AsyncClient) -> None:
    email = unique_email("nostore")
    registered = await client.post(
        "/api/register/",
        json={
            "email": email,
            "full_name": "No Store",
            "role": "Student",
            "password": TEST_PASSWORD,
            "password_confirm": TEST_PASSWORD,
        },
    )
    assert registered.status_code == 201
    assert not {"access", "refresh"} & set(registered.json())  # no token: nothing to protect
    login = await client.post("/api/auth/login/", json={"email": email, "password": TEST_PASSWORD})
    assert login.status_code == 200 and login.json()["access"]
    assert login.headers.get_list("cache-control") == ["no-store"]
    assert_security_headers(login)
    refreshed = await client.post("/api/token/refresh/", json={"refresh": login.json()["refresh"]})
    assert refreshed.status_code == 200 and refreshed.json()["access"]
    assert refreshed.headers.get_list("cache-control") == ["no-store"]
    assert_security_headers(refreshed)


# Malformed HTTP -------------------------------------------------------------------------------


async def raw_exchange(gateway_url: str, request: bytes) -> bytes:
    address = urlsplit(gateway_url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()


def parse_answer(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz/ HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
        b"GET /healthz/ HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GARBAGE\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /api/auth/login/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /api/auth/login/ HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello on the plain port
    ],
)
async def test_malformed_http_gets_the_contract_body(
    gateway_url: str, request_bytes: bytes
) -> None:
    status, headers, body = parse_answer(await raw_exchange(gateway_url, request_bytes))
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    assert json.loads(body) == {"error": True, "message": "Malformed HTTP request.", "errors": {}}
    for name, value in SECURITY_HEADERS.items():
        assert headers[name] == value
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "server" not in headers


async def test_a_good_request_on_the_same_server_still_works(gateway_url: str) -> None:
    status, headers, body = parse_answer(
        await raw_exchange(
            gateway_url, b"GET /healthz/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
    )
    assert status == 200 and json.loads(body) == {"status": "ok"}
    assert "server" not in headers


# The docs render under the policy -------------------------------------------------------------


def references(html: str) -> list[str]:
    return re.findall(r"""<(?:script|link)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""", html)


@pytest.mark.parametrize("page", ["/api/docs/", "/redoc/"])
async def test_csp_allows_what_the_docs_pages_reference(
    client: httpx.AsyncClient, page: str
) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    policy = csp_of(response)
    html = response.text
    # Every script and stylesheet comes from the gateway itself ('self') and is served.
    assets = references(html)
    assert assets, html
    for url in assets:
        assert url.startswith("/") and not url.startswith("//"), url
        assert (await client.get(url)).status_code == 200, url
    # Inline scripts run only by hash; inline styles and the bundles' needs are allowed.
    for script in re.findall(r"<script>(.*?)</script>", html, re.DOTALL):
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy["script-src"]
    if "<style>" in html:
        assert "'unsafe-inline'" in policy["style-src"]
    assert "data:" in policy["img-src"]  # the bundles' icons are data: URIs
    assert "blob:" in policy["worker-src"]  # ReDoc's search worker is built from a Blob
    assert policy["connect-src" if "connect-src" in policy else "default-src"] == ["'self'"]


async def test_swagger_ui_inline_script_is_the_one_hashed(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/docs/")
    hashes = inline_script_hashes(response.content)
    assert len(hashes) == 1
    assert csp_of(response)["script-src"] == ["'self'", *hashes]


async def test_bundles_need_nothing_else_from_outside(client: httpx.AsyncClient) -> None:
    """What the served bundles load at run time, beyond their own file: data: images
    (CSS), a Blob worker (ReDoc) and the OpenAPI document from this origin."""
    css = (await client.get("/static-offline-docs/swagger-ui.css")).text
    for url in re.findall(r"url\(([^)]*)\)", css):
        assert url.strip("\"'").startswith("data:"), url[:60]
    redoc = (await client.get("/static-offline-docs/redoc.standalone.js")).text
    assert "URL.createObjectURL(new Blob(" in redoc
    assert "fonts.googleapis.com" not in redoc
    for page in ("/api/docs/", "/redoc/"):
        html = (await client.get(page)).text
        assert "/api/schema/" in html
        assert "http://" not in html and "https://" not in html
