"""Prompt revocation of access tokens (issue #14 item 5), against the real platform: after a
logout, a refresh-family revocation or a deactivation, the tokens concerned are refused by the
gateway and by identity, catalog and learning over direct gRPC within 5 s (each verifier had
the token in its verification cache beforehand), other sessions keep working, a verifier that
starts afterwards refuses them at once, and one that loses Redis keeps refusing what it knew."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.app import create_app
from gateway.serving import uvicorn_options
from libs.settings import Settings
from services.catalog.server import build_server as build_catalog
from services.identity.server import build_server as build_identity
from services.learning.server import build_server as build_learning
from tests.conftest import User, register_and_login, serve_asgi
from tests.revocation_support import (
    ACCEPTED,
    REFUSED,
    REVOCATION_DEADLINE_S,
    TcpRelay,
    Verifiers,
    admin_user,
    login,
    redis_address,
    relayed_redis_url,
    seconds_until,
    started,
)


@pytest.fixture
async def verifiers(
    client: httpx.AsyncClient, services: dict[str, str]
) -> AsyncIterator[Verifiers]:
    everyone = Verifiers(client, services)
    yield everyone
    await everyone.close()


async def refused_everywhere_within_deadline(verifiers: Verifiers, token: str) -> float:
    async def refused() -> bool:
        return await verifiers.statuses(token) == REFUSED

    took = await seconds_until(refused, "the token refused by every verifier")
    assert took < REVOCATION_DEADLINE_S, f"took {took:.2f} s"
    return took


async def test_logout_ends_that_logins_access_token_everywhere(
    client: httpx.AsyncClient, verifiers: Verifiers, student: User
) -> None:
    other = await login(client, student.email)
    # Both verified (and so cached) by every verifier first.
    assert await verifiers.statuses(student.access) == ACCEPTED
    assert await verifiers.statuses(other["access"]) == ACCEPTED

    response = await client.post(
        "/api/auth/logout/", json={"refresh": student.refresh}, headers=student.headers
    )
    assert response.status_code == 204
    await refused_everywhere_within_deadline(verifiers, student.access)
    # That login only: the user's other session goes on.
    assert await verifiers.statuses(other["access"]) == ACCEPTED
    verify = await client.post("/api/token/verify/", json={"token": student.refresh})
    assert verify.status_code == 401


async def test_refresh_reuse_ends_every_token_of_that_family(
    client: httpx.AsyncClient, verifiers: Verifiers, student: User
) -> None:
    other = await login(client, student.email)
    rotated = (await client.post("/api/token/refresh/", json={"refresh": student.refresh})).json()
    for token in (student.access, rotated["access"]):
        assert await verifiers.statuses(token) == ACCEPTED

    replay = await client.post("/api/token/refresh/", json={"refresh": student.refresh})
    assert replay.status_code == 401
    for token in (student.access, rotated["access"]):
        await refused_everywhere_within_deadline(verifiers, token)
    assert await verifiers.statuses(other["access"]) == ACCEPTED


async def test_deactivation_ends_every_token_of_the_user_and_reactivation_allows_login(
    client: httpx.AsyncClient, verifiers: Verifiers, settings: Settings
) -> None:
    admin = await admin_user(client, settings)
    user = await register_and_login(client, "Student")
    second = await login(client, user.email)
    bystander = await register_and_login(client, "Student")
    for token in (user.access, second["access"], bystander.access):
        assert await verifiers.statuses(token) == ACCEPTED

    patched = await client.patch(
        f"/api/users/{user.id}/", json={"is_active": False}, headers=admin.headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["is_active"] is False
    for token in (user.access, second["access"]):
        await refused_everywhere_within_deadline(verifiers, token)
    assert await verifiers.statuses(bystander.access) == ACCEPTED
    for refresh in (user.refresh, second["refresh"]):
        assert (
            await client.post("/api/token/refresh/", json={"refresh": refresh})
        ).status_code == 401
    relogin = await client.post(
        "/api/auth/login/", json={"email": user.email, "password": "correct-horse-42"}
    )
    assert relogin.status_code == 401

    patched = await client.patch(
        f"/api/users/{user.id}/", json={"is_active": True}, headers=admin.headers
    )
    assert patched.status_code == 200 and patched.json()["is_active"] is True
    fresh = await login(client, user.email)
    assert await verifiers.statuses(fresh["access"]) == ACCEPTED
    me = await client.get("/api/users/me/", headers={"Authorization": f"Bearer {fresh['access']}"})
    assert me.json()["is_active"] is True
    # The tokens from before the deactivation stay revoked.
    assert await verifiers.statuses(user.access) == REFUSED


async def test_token_verify_refuses_a_spent_refresh_token(client: httpx.AsyncClient) -> None:
    user = await register_and_login(client)
    rotated = (await client.post("/api/token/refresh/", json={"refresh": user.refresh})).json()
    spent = await client.post("/api/token/verify/", json={"token": user.refresh})
    assert spent.status_code == 401
    assert spent.json()["error"] is True
    current = await client.post("/api/token/verify/", json={"token": rotated["refresh"]})
    assert current.status_code == 200, current.text
    # Verifying is not using: the current refresh token still rotates afterwards.
    again = await client.post("/api/token/refresh/", json={"refresh": rotated["refresh"]})
    assert again.status_code == 200


async def test_a_verifier_started_after_a_revocation_refuses_it_at_once(
    client: httpx.AsyncClient, settings: Settings, services: dict[str, str]
) -> None:
    student = await register_and_login(client)
    other = await login(client, student.email)
    response = await client.post(
        "/api/auth/logout/", json={"refresh": student.refresh}, headers=student.headers
    )
    assert response.status_code == 204

    # New replicas of every verifier (as after a restart or a scale-up): they load the recent
    # revocations before serving, so the very first call is refused, with no wait.
    async with (
        started(build_identity(settings, port=0)) as identity,
        started(build_catalog(settings, port=0)) as catalog,
        started(build_learning(settings, port=0)) as learning,
        serve_asgi(create_app(settings), **uvicorn_options()) as gateway_url,
        httpx.AsyncClient(base_url=gateway_url, timeout=30) as fresh_http,
    ):
        fresh = Verifiers(
            fresh_http, {"identity": identity, "catalog": catalog, "learning": learning}
        )
        try:
            assert await fresh.statuses(student.access) == REFUSED
            assert await fresh.statuses(other["access"]) == ACCEPTED
        finally:
            await fresh.close()


async def test_a_verifier_that_loses_redis_keeps_refusing_what_it_knew(
    client: httpx.AsyncClient,
    settings: Settings,
    services: dict[str, str],
    capfd: pytest.CaptureFixture[str],
) -> None:
    relay = await TcpRelay(*redis_address(settings.redis_url)).start()
    relayed = settings.model_copy(
        update={"redis_url": relayed_redis_url(settings.redis_url, relay)}
    )
    known = await register_and_login(client)
    later = await register_and_login(client)
    try:
        async with started(build_catalog(relayed, port=0)) as catalog:
            verifiers = Verifiers(client, {**services, "catalog": catalog})
            try:

                async def catalog_answers(token: str) -> object:
                    return (await verifiers.statuses(token))["catalog"]

                assert await catalog_answers(known.access) == "OK"
                assert await catalog_answers(later.access) == "OK"
                await client.post(
                    "/api/auth/logout/", json={"refresh": known.refresh}, headers=known.headers
                )

                async def known_refused() -> bool:
                    return await catalog_answers(known.access) == "UNAUTHENTICATED"

                assert await seconds_until(known_refused, "refused") < REVOCATION_DEADLINE_S

                await relay.cut()  # Redis unreachable from this catalog from now on
                await asyncio.sleep(3)  # several failed reads and reconnects
                assert await catalog_answers(known.access) == "UNAUTHENTICATED"
                assert await catalog_answers(later.access) == "OK"
                logged = capfd.readouterr()
                assert "revocation feed cannot reach Redis" in logged.out + logged.err

                # Back: it catches up with what it missed, from the last entry it saw.
                await client.post(
                    "/api/auth/logout/", json={"refresh": later.refresh}, headers=later.headers
                )
                await asyncio.sleep(0.5)
                assert await catalog_answers(later.access) == "OK"  # not heard of yet
                await relay.restore()

                async def later_refused() -> bool:
                    return await catalog_answers(later.access) == "UNAUTHENTICATED"

                await seconds_until(later_refused, "refused after Redis came back")
                assert await catalog_answers(known.access) == "UNAUTHENTICATED"
            finally:
                await verifiers.close()
    finally:
        await relay.stop()


async def test_password_change_ends_every_earlier_token_of_the_user(
    client: httpx.AsyncClient, verifiers: Verifiers
) -> None:
    user = await register_and_login(client, "Student")
    second = await login(client, user.email)
    for token in (user.access, second["access"]):
        assert await verifiers.statuses(token) == ACCEPTED
    changed = await client.post(
        "/api/auth/password/change/",
        json={
            "current_password": "correct-horse-42",
            "new_password": "plane-river-violet",
            "new_password_confirm": "plane-river-violet",
        },
        headers=user.headers,
    )
    assert changed.status_code == 204, changed.text
    for token in (user.access, second["access"]):
        await refused_everywhere_within_deadline(verifiers, token)
    # A login right after the change (within the same second) works everywhere.
    fresh = await login(client, user.email, "plane-river-violet")
    assert await verifiers.statuses(fresh["access"]) == ACCEPTED
