"""Catalog updates written after waiting for another transaction are stamped after it: a
course changed by two transactions in turn never shows the later change with the earlier time."""

from __future__ import annotations

import asyncio
import datetime as dt

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.db import session_factory, transaction
from services.catalog import store
from tests.conftest import User


async def test_an_update_after_a_lock_wait_is_stamped_after_the_update_it_waited_for(
    client: httpx.AsyncClient, instructor: User, engine: AsyncEngine
) -> None:
    created = await client.post(
        "/api/courses/",
        json={"title": "Timestamps", "short_description": "In order."},
        headers=instructor.headers,
    )
    assert created.status_code == 201, created.text
    course_id = created.json()["id"]
    async with transaction(session_factory(engine)) as session:
        await session.execute(sa.select(1))  # this transaction began before the PATCH below
        await asyncio.sleep(0.05)
        patched = await client.patch(
            f"/api/courses/{course_id}/", json={"title": "First"}, headers=instructor.headers
        )
        assert patched.status_code == 200, patched.text
        await store.course_by_id(session, course_id, lock="update")
        later = await store.update_course(session, course_id, {"title": "Second"})
        published = await store.publish_course(session, course_id)
    first_at = dt.datetime.fromisoformat(patched.json()["updated_at"].replace("Z", "+00:00"))
    assert first_at <= later.updated_at <= published.updated_at
