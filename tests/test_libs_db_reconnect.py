"""Dropped database connections without a pre-ping (libs/db.py), against a real PostgreSQL that
the test restarts (same data directory, same socket) or whose backend it terminates.

- After a restart, reads succeed without the caller seeing an error: the pool hands out no
  connection the server closed, and a read whose connection drops while in use is retried once.
- A write is retried only when that is safe: the connection dropped before COMMIT was sent
  (the server rolled the transaction back), never when it dropped at COMMIT (it may have
  committed); a business error is never retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from libs import outages
from libs.db import create_engine, read, session_factory, transaction, write
from libs.embedded import ensure_database
from libs.settings import Settings
from tests.postgres_support import RestartablePostgres

POOL_SIZE = 3


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartablePostgres]:
    server = RestartablePostgres(Path(tmp_path_factory.mktemp("reconnect")) / "postgres")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def private_url(database: RestartablePostgres) -> str:
    url = ensure_database(database.url, "reconnect")
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS marks (name text NOT NULL)")
    return url


@pytest.fixture
async def engine(settings: Settings, private_url: str) -> AsyncIterator[AsyncEngine]:
    private = settings.model_copy(
        update={
            "database_url": Settings(database_url=private_url).database_url,
            "db_pool_size": POOL_SIZE,
            "db_max_overflow": 0,
            "db_connect_timeout_s": 5,
            "sql_statement_counting": False,
        }
    )
    engine = create_engine(private, "reconnect-test")
    yield engine
    await engine.dispose()


def restart(database: RestartablePostgres) -> None:
    database.stop()
    database.start()


async def backend_pid(connection: AsyncConnection | AsyncSession) -> int:
    return int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def fill_pool(engine: AsyncEngine) -> set[int]:
    """Every pooled connection opened and returned; their backend pids."""

    async def hold(_: int) -> int:
        async with engine.connect() as connection:
            pid = await backend_pid(connection)
            await asyncio.sleep(0.2)  # all held at once, so the pool opens POOL_SIZE of them
            return pid

    return set(await asyncio.gather(*(hold(n) for n in range(POOL_SIZE))))


def marks(private_url: str, name: str) -> int:
    with psycopg.connect(private_url) as connection:
        row = connection.execute("SELECT count(*) FROM marks WHERE name = %s", (name,)).fetchone()
        assert row is not None
        return int(row[0])


async def test_reads_after_a_restart_succeed_on_fresh_connections(
    engine: AsyncEngine, database: RestartablePostgres
) -> None:
    before = await fill_pool(engine)
    assert len(before) == POOL_SIZE
    await asyncio.to_thread(restart, database)

    # More reads at once than the pool holds: each gets a working connection, none an error.
    pids = await asyncio.gather(*(read(engine, backend_pid) for _ in range(POOL_SIZE * 2)))
    assert not set(pids) & before


async def test_checkout_hands_out_no_connection_the_server_closed(
    engine: AsyncEngine, database: RestartablePostgres
) -> None:
    """Also for code that does not retry (a plain `transaction`): after the restart every
    pooled connection's socket says the server left, so checkout replaces it, no round trip."""
    before = await fill_pool(engine)
    await asyncio.to_thread(restart, database)
    sessions = session_factory(engine)

    async def first_statement(_: int) -> int:
        async with transaction(sessions) as session:
            return await backend_pid(session)

    pids = await asyncio.gather(*(first_statement(n) for n in range(POOL_SIZE)))
    assert not set(pids) & before


async def test_a_read_whose_connection_drops_in_use_is_retried_once(
    engine: AsyncEngine, database: RestartablePostgres
) -> None:
    await fill_pool(engine)
    attempts: list[int] = []

    async def work(connection: AsyncConnection) -> int:
        attempts.append(await backend_pid(connection))
        if len(attempts) == 1:
            # The server goes away while this read holds its connection.
            await asyncio.to_thread(restart, database)
        return await backend_pid(connection)

    pid = await read(engine, work)
    assert len(attempts) == 2
    assert pid == attempts[1] != attempts[0]


async def test_a_write_dropped_before_commit_is_retried_and_applied_once(
    engine: AsyncEngine, database: RestartablePostgres, private_url: str
) -> None:
    await fill_pool(engine)
    attempts = 0

    async def work(session: AsyncSession) -> None:
        nonlocal attempts
        attempts += 1
        await session.execute(text("INSERT INTO marks VALUES ('before-commit')"))
        if attempts == 1:
            # Dropped after the insert was sent, before COMMIT: the server rolls it back.
            await asyncio.to_thread(restart, database)
        await session.execute(text("SELECT 1"))

    await write(session_factory(engine), work)
    assert attempts == 2
    assert marks(private_url, "before-commit") == 1


async def test_a_write_dropped_at_commit_is_not_retried(
    engine: AsyncEngine, private_url: str
) -> None:
    await fill_pool(engine)
    attempts = 0
    pids: list[int] = []

    async def work(session: AsyncSession) -> None:
        nonlocal attempts
        attempts += 1
        pid = await backend_pid(session)
        pids.append(pid)
        await session.execute(text("INSERT INTO marks VALUES ('at-commit')"))

        def terminate(_: object) -> None:
            # Right before COMMIT goes out, the backend is killed: whether a COMMIT that fails
            # like this took effect is unknowable in general, so it must not be run again.
            with psycopg.connect(private_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

        event.listen(session.sync_session, "before_commit", terminate, once=True)

    with pytest.raises(DBAPIError) as raised:
        await write(session_factory(engine), work)
    assert attempts == 1
    assert raised.value.connection_invalidated
    assert outages.is_outage(raised.value)  # the caller answers UNAVAILABLE, not INTERNAL
    assert marks(private_url, "at-commit") == 0
    # The pool recovers by itself: the next read gets a new backend.
    assert await read(engine, backend_pid) != pids[0]


async def test_a_failing_write_is_not_retried(engine: AsyncEngine, private_url: str) -> None:
    attempts = 0

    class Refused(Exception):
        pass

    async def work(session: AsyncSession) -> None:
        nonlocal attempts
        attempts += 1
        await session.execute(text("INSERT INTO marks VALUES ('refused')"))
        raise Refused

    with pytest.raises(Refused):
        await write(session_factory(engine), work)
    assert attempts == 1
    assert marks(private_url, "refused") == 0
