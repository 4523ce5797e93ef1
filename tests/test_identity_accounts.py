"""Account states the REST surface cannot set up by itself (stored with SQL on the real database):
password hashes, re-hashing on new parameters, deactivated users."""

from __future__ import annotations

import httpx
import psycopg

from libs.settings import Settings, to_libpq_url
from services.identity.passwords import Passwords
from tests.conftest import TEST_PASSWORD, User, assert_error_body, register_and_login


async def stored_hash(database_url: str, user_id: int) -> str:
    async with await psycopg.AsyncConnection.connect(to_libpq_url(database_url)) as conn:
        cursor = await conn.execute(
            "SELECT password_hash FROM identity.users WHERE id = %s", (user_id,)
        )
        row = await cursor.fetchone()
    assert row is not None
    return str(row[0])


async def execute(database_url: str, sql: str, *params: object) -> None:
    async with await psycopg.AsyncConnection.connect(to_libpq_url(database_url)) as conn:
        await conn.execute(sql, params)
        await conn.commit()


async def test_passwords_are_stored_as_argon2id_with_the_configured_cost(
    student: User, database_url: str, settings: Settings
) -> None:
    password_hash = await stored_hash(database_url, student.id)
    assert password_hash.startswith("$argon2id$")
    assert (
        f"m={settings.argon2_memory_kib},t={settings.argon2_time_cost},"
        f"p={settings.argon2_parallelism}"
    ) in password_hash
    assert TEST_PASSWORD not in password_hash


async def test_hash_and_verify(settings: Settings) -> None:
    passwords = Passwords(settings)
    first = await passwords.hash("correct-horse-1")
    second = await passwords.hash("correct-horse-1")
    assert first != second  # salted
    assert await passwords.verify(first, "correct-horse-1")
    assert not await passwords.verify(first, "correct-horse-2")
    assert not await passwords.verify("not-a-hash", "correct-horse-1")
    # No stored hash (unknown user): a dummy verification runs, and it never matches.
    assert not await passwords.verify(None, "not-a-real-password")


async def test_login_rehashes_a_hash_made_with_older_parameters(
    client: httpx.AsyncClient, database_url: str, settings: Settings
) -> None:
    user = await register_and_login(client)
    weaker = Passwords(settings.model_copy(update={"argon2_time_cost": 1}))
    await execute(
        database_url,
        "UPDATE identity.users SET password_hash = %s WHERE id = %s",
        await weaker.hash(TEST_PASSWORD),
        user.id,
    )
    assert ",t=1," in await stored_hash(database_url, user.id)

    response = await client.post(
        "/api/auth/login/", json={"email": user.email, "password": TEST_PASSWORD}
    )
    assert response.status_code == 200, response.text
    assert f",t={settings.argon2_time_cost}," in await stored_hash(database_url, user.id)
    # And the new hash still opens the door.
    again = await client.post(
        "/api/auth/login/", json={"email": user.email, "password": TEST_PASSWORD}
    )
    assert again.status_code == 200


async def test_deactivated_user_cannot_log_in_or_refresh(
    client: httpx.AsyncClient, database_url: str
) -> None:
    user = await register_and_login(client)
    await execute(
        database_url, "UPDATE identity.users SET is_active = false WHERE id = %s", user.id
    )

    login = await client.post(
        "/api/auth/login/", json={"email": user.email, "password": TEST_PASSWORD}
    )
    wrong = await client.post(
        "/api/auth/login/", json={"email": user.email, "password": "wrong-password"}
    )
    # Same answer as a wrong password: a login does not reveal that the account exists.
    assert assert_error_body(login, 401) == assert_error_body(wrong, 401)
    assert_error_body(await client.post("/api/token/refresh/", json={"refresh": user.refresh}), 401)
