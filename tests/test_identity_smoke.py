"""A first end-to-end path: register, log in, read yourself, through gateway and identity."""

from __future__ import annotations

import httpx

from tests.conftest import User, assert_error_body


async def test_register_login_me(client: httpx.AsyncClient, student: User) -> None:
    response = await client.get("/api/users/me/", headers=student.headers)
    assert response.status_code == 200, response.text
    assert response.json()["email"] == student.email
    assert response.json()["role"] == "Student"


async def test_me_without_token_is_401(client: httpx.AsyncClient) -> None:
    assert_error_body(await client.get("/api/users/me"), 401)


async def test_unknown_route_is_contract_404(client: httpx.AsyncClient) -> None:
    assert_error_body(await client.get("/api/nothing-here/"), 404)
