"""Password policy at registration, password change, and reset by mail (#14 items 2-4), end to
end: REST through the gateway, identity's outbox and relay, the Redis stream, the notifier, and
the mail read back from a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import hashlib
import re
import statistics
import time
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
import sqlalchemy as sa
from courseplatform.identity.v1 import identity_pb2, identity_pb2_grpc
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.settings import Settings
from libs.streams import PASSWORD_RESET_STREAM
from services.notifier.app import NotifierApp
from tests.conftest import TEST_PASSWORD, User, assert_error_body, register_and_login, unique_email
from tests.notifier_support import (
    MailCatcher,
    ReceivedMail,
    eventually,
    fast_settings,
    running_notifier,
)

NEW_PASSWORD = "plane-river-violet-7"
CODE_LINE = re.compile(r"^Reset code: (\S+)\r?$", re.MULTILINE)
PUBLIC_BASE_URL = "https://courses.example.org"


@pytest.fixture
async def notifier(
    settings: Settings, services: dict[str, str], catcher: MailCatcher
) -> AsyncIterator[NotifierApp]:
    """The notifier on the production streams the suite's identity publishes to."""
    mail_settings = fast_settings(settings, catcher, public_base_url=PUBLIC_BASE_URL)
    async with running_notifier(mail_settings) as running:
        yield running


async def log_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/api/auth/login/", json={"email": email, "password": password})


async def refresh_works(client: httpx.AsyncClient, refresh: str) -> bool:
    response = await client.post("/api/token/refresh/", json={"refresh": refresh})
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


# Registration ---------------------------------------------------------------------------------


@pytest.mark.parametrize("password", ["password", "12345678", "        ", "iloveyou1"])
async def test_registration_refuses_common_and_blank_passwords(
    client: httpx.AsyncClient, password: str
) -> None:
    response = await client.post(
        "/api/register/",
        json={
            "email": unique_email("weak"),
            "full_name": "Wes Weak",
            "role": "Student",
            "password": password,
            "password_confirm": password,
        },
    )
    body = assert_error_body(response, 400, "password")
    [reason] = body["errors"]["password"]
    assert reason.endswith(".") and len(reason.split()) > 3  # a sentence that says why


async def test_registration_refuses_the_email_and_the_name(client: httpx.AsyncClient) -> None:
    email = unique_email("self")
    for password, reason in ((email, "email"), ("Wilma Flintstone", "name")):
        response = await client.post(
            "/api/register/",
            json={
                "email": email,
                "full_name": "Wilma Flintstone",
                "role": "Student",
                "password": password,
                "password_confirm": password,
            },
        )
        body = assert_error_body(response, 400, "password")
        assert reason in body["errors"]["password"][0]


# Change ---------------------------------------------------------------------------------------


def change(current: str, new: str, confirm: str | None = None) -> dict[str, str]:
    return {
        "current_password": current,
        "new_password": new,
        "new_password_confirm": new if confirm is None else confirm,
    }


async def test_change_password_ends_every_session(client: httpx.AsyncClient, student: User) -> None:
    other_device = (await log_in(client, student.email, TEST_PASSWORD)).json()

    response = await client.post(
        "/api/auth/password/change/",
        json=change(TEST_PASSWORD, NEW_PASSWORD),
        headers=student.headers,
    )
    assert response.status_code == 204, response.text
    assert response.content == b""

    assert (await log_in(client, student.email, TEST_PASSWORD)).status_code == 401
    assert (await log_in(client, student.email, NEW_PASSWORD)).status_code == 200
    # Every refresh token of the user, of every login, is revoked.
    assert not await refresh_works(client, student.refresh)
    assert not await refresh_works(client, other_device["refresh"])


async def test_change_password_errors(client: httpx.AsyncClient, student: User) -> None:
    url, headers = "/api/auth/password/change/", student.headers
    wrong = await client.post(url, json=change("not-my-password", NEW_PASSWORD), headers=headers)
    body = assert_error_body(wrong, 400, "current_password")
    assert set(body["errors"]) == {"current_password"}

    mismatch = await client.post(
        url, json=change(TEST_PASSWORD, NEW_PASSWORD, "something-else-9"), headers=headers
    )
    assert set(assert_error_body(mismatch, 400, "non_field_errors")["errors"]) == {
        "non_field_errors"
    }

    weak = await client.post(url, json=change(TEST_PASSWORD, "password1"), headers=headers)
    assert set(assert_error_body(weak, 400, "password")["errors"]) == {"password"}

    missing = await client.post(url, json={"current_password": TEST_PASSWORD}, headers=headers)
    assert_error_body(missing, 400, "new_password")

    assert_error_body(await client.post(url, json=change(TEST_PASSWORD, NEW_PASSWORD)), 401)
    # None of the refusals changed anything.
    assert (await log_in(client, student.email, TEST_PASSWORD)).status_code == 200
    assert await refresh_works(client, student.refresh)


async def test_change_password_over_grpc_needs_a_token(services: dict[str, str]) -> None:
    async with grpc.aio.insecure_channel(services["identity"]) as channel:
        identity = identity_pb2_grpc.IdentityServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await identity.ChangePassword(
                identity_pb2.ChangePasswordRequest(
                    current_password=TEST_PASSWORD,
                    new_password=NEW_PASSWORD,
                    new_password_confirm=NEW_PASSWORD,
                )
            )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


# Reset by mail --------------------------------------------------------------------------------


async def request_reset(client: httpx.AsyncClient, email: str) -> httpx.Response:
    return await client.post("/api/auth/password/reset/", json={"email": email})


async def confirm(
    client: httpx.AsyncClient, code: str, password: str, confirm_with: str | None = None
) -> httpx.Response:
    return await client.post(
        "/api/auth/password/reset/confirm/",
        json={
            "code": code,
            "new_password": password,
            "new_password_confirm": password if confirm_with is None else confirm_with,
        },
    )


async def mails_to(catcher: MailCatcher, email: str, count: int) -> list[ReceivedMail]:
    await eventually(lambda: len(catcher.to(email)) >= count, what=f"{count} mail(s) to {email}")
    return catcher.to(email)


def code_of(mail: ReceivedMail) -> str:
    [code] = CODE_LINE.findall(mail.text)
    return code


async def test_reset_by_mail_end_to_end(
    client: httpx.AsyncClient,
    student: User,
    catcher: MailCatcher,
    notifier: NotifierApp,
    engine: AsyncEngine,
    redis: Redis,
) -> None:
    other_device = (await log_in(client, student.email, TEST_PASSWORD)).json()
    response = await request_reset(client, student.email.upper())  # any case, like login
    assert response.status_code == 202, response.text
    assert response.json() == {}

    [mail] = await mails_to(catcher, student.email, 1)
    assert "password" in str(mail.message["Subject"]).lower()
    assert mail.recipients == [student.email]
    code = code_of(mail)
    assert len(code) >= 22  # >= 128 bits of URL-safe base64
    assert f"{PUBLIC_BASE_URL}/password-reset/#code={code}" in mail.text
    assert student.full_name in mail.text

    # Only the code's hash is kept; the outbox row's payload is emptied once relayed, and the
    # stream entry is deleted once mailed.
    async with engine.connect() as connection:
        stored = (
            await connection.execute(
                sa.text(
                    "SELECT code_hash, expires_at - created_at AS ttl FROM identity.password_resets"
                    " WHERE user_id = :user"
                ),
                {"user": student.id},
            )
        ).all()
        payloads = (
            await connection.execute(sa.text("SELECT payload FROM identity.outbox"))
        ).scalars()
        assert all(code.encode() not in bytes(payload) for payload in payloads)
    [(stored_hash, ttl)] = stored
    assert stored_hash == hashlib.sha256(code.encode()).hexdigest()
    assert ttl.total_seconds() == 1800

    async def stream_forgot_it() -> bool:
        entries = await redis.xrange(PASSWORD_RESET_STREAM)
        return all(code.encode() not in b"".join(fields.values()) for _, fields in entries)

    await eventually(stream_forgot_it, what="the mailed entry to leave the stream")

    # A refused new password does not use the code up.
    weak = await confirm(client, code, "password")
    assert set(assert_error_body(weak, 400, "password")["errors"]) == {"password"}
    mismatch = await confirm(client, code, NEW_PASSWORD, "plane-river-violet-8")
    assert_error_body(mismatch, 400, "non_field_errors")

    done = await confirm(client, code, NEW_PASSWORD)
    assert done.status_code == 204, done.text
    assert (await log_in(client, student.email, TEST_PASSWORD)).status_code == 401
    assert (await log_in(client, student.email, NEW_PASSWORD)).status_code == 200
    assert not await refresh_works(client, student.refresh)
    assert not await refresh_works(client, other_device["refresh"])

    # Single use.
    again = await confirm(client, code, "another-fine-password-3")
    assert set(assert_error_body(again, 400, "code")["errors"]) == {"code"}
    assert (await log_in(client, student.email, NEW_PASSWORD)).status_code == 200


async def test_an_expired_or_unknown_code_is_refused(
    client: httpx.AsyncClient,
    student: User,
    catcher: MailCatcher,
    notifier: NotifierApp,
    engine: AsyncEngine,
) -> None:
    assert (await request_reset(client, student.email)).status_code == 202
    code = code_of((await mails_to(catcher, student.email, 1))[0])
    # The clock moves on: the code's 30 minutes are over.
    async with engine.begin() as connection:
        await connection.execute(
            sa.text(
                "UPDATE identity.password_resets SET expires_at = clock_timestamp() - interval "
                "'1 second' WHERE user_id = :user"
            ),
            {"user": student.id},
        )
    for attempt in (code, "x" * 32, " "):
        refused = await confirm(client, attempt, NEW_PASSWORD)
        assert set(assert_error_body(refused, 400, "code")["errors"]) == {"code"}
    assert (await log_in(client, student.email, TEST_PASSWORD)).status_code == 200


async def test_at_most_three_mails_an_hour_the_rest_silently_dropped(
    client: httpx.AsyncClient,
    student: User,
    catcher: MailCatcher,
    notifier: NotifierApp,
    engine: AsyncEngine,
) -> None:
    answers = [await request_reset(client, student.email) for _ in range(5)]
    assert [(a.status_code, a.json()) for a in answers] == [(202, {})] * 5
    mails = await mails_to(catcher, student.email, 3)
    async with engine.connect() as connection:
        codes = await connection.scalar(
            sa.text("SELECT count(*) FROM identity.password_resets WHERE user_id = :user"),
            {"user": student.id},
        )
    assert codes == 3
    assert len({code_of(mail) for mail in mails}) == 3
    # Any of them works, and using one uses them all up.
    first, second, _ = (code_of(mail) for mail in mails)
    assert (await confirm(client, second, NEW_PASSWORD)).status_code == 204
    assert_error_body(await confirm(client, first, "another-fine-password-3"), 400, "code")
    await asyncio.sleep(0.5)
    assert len(catcher.to(student.email)) == 3


async def test_reset_answers_alike_for_unknown_and_registered_emails(
    client: httpx.AsyncClient, catcher: MailCatcher, notifier: NotifierApp
) -> None:
    registered = [(await register_and_login(client, "Student")).email for _ in range(6)]
    unknown = [unique_email("nobody") for _ in range(6)]
    timings: dict[str, list[float]] = {"registered": [], "unknown": []}
    for known, stranger in zip(registered, unknown, strict=True):
        for kind, email in (("registered", known), ("unknown", stranger)):
            started = time.perf_counter()
            response = await request_reset(client, email)
            timings[kind].append(time.perf_counter() - started)
            assert (response.status_code, response.json()) == (202, {})
            assert "retry-after" not in response.headers
    for email in registered:
        await mails_to(catcher, email, 1)
    await asyncio.sleep(0.5)
    assert all(catcher.to(email) == [] for email in unknown)
    # Similar time: the registered case adds an insert, no mail is sent while the client waits.
    difference = statistics.median(timings["registered"]) - statistics.median(timings["unknown"])
    assert abs(difference) < 0.05, timings


@pytest.mark.parametrize("email", ["not-an-email", "", "a@b@c"])
async def test_reset_refuses_an_invalid_email(client: httpx.AsyncClient, email: str) -> None:
    response = await request_reset(client, email)
    assert set(assert_error_body(response, 400, "email")["errors"]) == {"email"}


async def test_a_deactivated_user_gets_no_mail(
    client: httpx.AsyncClient,
    student: User,
    catcher: MailCatcher,
    notifier: NotifierApp,
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            sa.text("UPDATE identity.users SET is_active = false WHERE id = :user"),
            {"user": student.id},
        )
    assert (await request_reset(client, student.email)).status_code == 202
    control = await register_and_login(client, "Student")
    assert (await request_reset(client, control.email)).status_code == 202
    await mails_to(catcher, control.email, 1)  # the relay and notifier did run meanwhile
    assert catcher.to(student.email) == []


async def test_password_routes_are_in_the_openapi_schema(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/api/schema/")).json()["paths"]
    for path, status in (
        ("/api/auth/password/change/", "204"),
        ("/api/auth/password/reset/", "202"),
        ("/api/auth/password/reset/confirm/", "204"),
    ):
        responses = paths[path]["post"]["responses"]
        assert status in responses and "400" in responses, (path, responses)
    assert "429" in paths["/api/auth/login/"]["post"]["responses"]
