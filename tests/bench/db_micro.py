"""python -m tests.bench.db_micro: what one catalog GetCourse read costs the service process, per
variant of the database path (docs/benchmarks.md, "Leaner per-call path"). Sequential calls on
one connection pool against PostgreSQL (DATABASE_URL or 127.0.0.1:5432, a scratch database that
is dropped afterwards); reports CPU µs and wall µs per call of this process."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from libs import migrations
from libs.db import create_engine, read, session_factory, transaction
from libs.embedded import drop_database, ensure_database
from libs.settings import Settings
from services.catalog import store
from services.catalog.domain import NewLesson

CALLS = int(os.environ.get("MICRO_CALLS", "3000"))
ADMIN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


async def seed(engine: AsyncEngine) -> int:
    async with transaction(session_factory(engine)) as session:
        course = await store.insert_course(
            session,
            code=f"MICRO-{uuid.uuid4().hex[:8]}",
            instructor_id=1,
            instructor_name="Micro",
            title="Micro course",
            short_description="d",
        )
        await store.insert_lessons(
            session, course.id, [NewLesson(f"L{n}", "content " * 20, n) for n in range(1, 11)]
        )
    return course.id


async def measure(name: str, call: Callable[[], Awaitable[object]]) -> None:
    for _ in range(200):
        await call()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(CALLS):
        await call()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"| {name} | {cpu / CALLS * 1e6:,.0f} | {wall / CALLS * 1e6:,.0f} |", flush=True)


def engine_for(url: str, *, pre_ping: bool, prepare_threshold: int | None) -> AsyncEngine:
    settings = Settings(database_url=url, sql_statement_counting=False)
    if pre_ping or prepare_threshold != 5:
        return create_async_engine(
            settings.database_url,
            pool_size=2,
            pool_pre_ping=pre_ping,
            connect_args={"prepare_threshold": prepare_threshold},
        )
    return create_engine(settings, "micro")


async def main() -> None:
    name = f"cp_micro_{uuid.uuid4().hex[:8]}"
    url = ensure_database(ADMIN, name)
    try:
        migrations.upgrade(url, "catalog")
        base = create_engine(Settings(database_url=url), "micro-seed")
        course_id = await seed(base)
        await base.dispose()
        print("| variant | CPU µs/call | wall µs/call |\n|---|---:|---:|")

        async def two_statements_in_session(engine: AsyncEngine) -> object:
            async with session_factory(engine)() as session:
                course = await store.course_by_id(session, course_id)
                assert course is not None
                return await store.course_with_lessons(session, course)

        async def one_statement_read(engine: AsyncEngine) -> object:
            async def load(connection: AsyncConnection) -> object:
                return await store.course_with_lessons_by_id(connection, course_id)

            return await read(engine, load)

        variants = [
            ("ORM session, 2 statements, pre-ping", True, 5, two_statements_in_session),
            ("ORM session, 2 statements, no pre-ping", False, 5, two_statements_in_session),
            ("Core autocommit read, 1 statement, no pre-ping", False, 5, one_statement_read),
            ("same, prepared statements off", False, None, one_statement_read),
            ("same, prepared from the 1st execution", False, 0, one_statement_read),
        ]
        for label, pre_ping, threshold, call in variants:
            engine = engine_for(url, pre_ping=pre_ping, prepare_threshold=threshold)
            try:
                await measure(label, lambda engine=engine, call=call: call(engine))  # type: ignore[misc]
            finally:
                await engine.dispose()
    finally:
        drop_database(ADMIN, name)


if __name__ == "__main__":
    asyncio.run(main())
