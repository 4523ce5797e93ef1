"""Races the database must decide: simultaneous registrations of one email, simultaneous use of
one refresh token."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import psycopg
import pytest

from libs.settings import to_libpq_url
from tests.conftest import TEST_PASSWORD, User, assert_error_body, unique_email


async def users_with_email(database_url: str, email: str) -> int:
    async with await psycopg.AsyncConnection.connect(to_libpq_url(database_url)) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM identity.users WHERE lower(email) = lower(%s)", (email,)
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("contenders", [2, 10])
async def test_concurrent_registrations_of_one_email(
    client: httpx.AsyncClient, database_url: str, contenders: int
) -> None:
    email = unique_email("race")
    # Mixed spellings of one address: uniqueness is case-insensitive under a race too.
    spellings = [email if i % 2 == 0 else email.upper() for i in range(contenders)]
    bodies = [
        {
            "email": spelling,
            "full_name": f"Racer {i}",
            "role": "Student",
            "password": TEST_PASSWORD,
            "password_confirm": TEST_PASSWORD,
        }
        for i, spelling in enumerate(spellings)
    ]
    responses = await asyncio.gather(*(client.post("/api/register/", json=b) for b in bodies))

    assert Counter(r.status_code for r in responses) == {201: 1, 400: contenders - 1}, [
        r.text for r in responses
    ]
    for response in responses:
        if response.status_code == 400:
            body = assert_error_body(response, 400, "email")
            assert body["errors"]["email"] == ["A user with this email already exists."]
    assert await users_with_email(database_url, email) == 1


async def test_concurrent_refreshes_of_one_token_rotate_it_once(
    client: httpx.AsyncClient, student: User
) -> None:
    """The row lock lets exactly one rotation win; the loser is treated as a replay."""
    responses = await asyncio.gather(
        *(client.post("/api/token/refresh/", json={"refresh": student.refresh}) for _ in range(5))
    )
    assert Counter(r.status_code for r in responses) == {200: 1, 401: 4}, [
        r.text for r in responses
    ]
