"""Async SQLAlchemy engines and sessions, each bound to one service's schema.

Every service declares its tables on `schema_metadata(SCHEMA)`, so all SQL names the schema
explicitly and no service can reach another's tables by a search_path accident.

Dropped connections (a PostgreSQL restart or failover, an idle connection cut by the network):
there is no pre-ping round trip on every checkout. Instead
- a checkout hands out no connection whose socket already says the server is gone
  (`_discard_if_closed`: one non-blocking poll of the socket, no round trip), and after any
  disconnect the pool retires every connection older than it;
- `read` retries a read once on a fresh connection when its connection turned out dropped, and
  `write` retries a unit of work once when the connection dropped before COMMIT was sent (the
  server rolled the transaction back, so running it again is safe); a drop during COMMIT is
  never retried (it may have committed) and reaches the caller as an outage (UNAVAILABLE).
"""

from __future__ import annotations

import dataclasses
import select
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, MetaData, Row, Table, event, func, text
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from libs import deadlines, metrics, sql_counting, tracing
from libs.health_watch import HealthProbe
from libs.logging import get_logger
from libs.settings import Settings

log = get_logger("db")

# Constraint names Alembic and the error mapping can rely on.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def schema_metadata(schema: str) -> MetaData:
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


R = TypeVar("R")


def row_columns(
    table: Table, row_type: type[Any], renamed: Mapping[str, str] | None = None
) -> tuple[ColumnElement[Any], ...]:
    """The columns a row dataclass holds, in its field order, each labelled with its field name.

    The dataclass is the one list of what a query returns: a field added to it is selected
    everywhere, with no column list to keep in step. `renamed` maps a field to its column when
    the names differ (`order` is `position` in SQL).
    """
    renamed = renamed or {}
    columns: list[ColumnElement[Any]] = []
    for field in dataclasses.fields(row_type):
        column = table.c[renamed.get(field.name, field.name)]
        columns.append(column.label(field.name) if field.name in renamed else column)
    return tuple(columns)


def from_row(row_type: Callable[..., R], row: Row[Any]) -> R:
    """A row dataclass from a row selected with exactly `row_columns(table, row_type)`: by
    position, one call per row (no mapping built, no lookup per field) for list pages."""
    return row_type(*row)


def to_row(row_type: type[R], row: Row[Any], prefix: str = "") -> R:
    """A row dataclass from a result row selected with `row_columns` (labels `prefix` + field)."""
    values = row._mapping
    fields = dataclasses.fields(row_type)  # type: ignore[arg-type]
    return row_type(**{field.name: values[prefix + field.name] for field in fields})


def clock_now() -> ColumnElement[datetime]:
    """The time the statement runs (`clock_timestamp()`): for every time written under a lock.

    `now()` is when the transaction began; one that waited on a lock would stamp a time earlier
    than the transaction it waited for, and timestamps would contradict the order of events.
    """
    return func.clock_timestamp()


def _discard_if_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Pool checkout: refuse a connection the server has already closed. An idle connection has
    nothing to read unless the server sent its goodbye (FATAL "terminating connection") and
    closed the socket; the pool then discards it and checks out another (up to three times).
    One poll of the socket, not a round trip; a connection whose drop is not visible yet fails
    on its first statement instead and `read`/`write` retry."""
    driver = getattr(dbapi_connection, "driver_connection", None)
    if driver is None:
        return
    if driver.closed or driver.broken:
        raise DisconnectionError("connection closed")
    try:
        readable, _, _ = select.select([driver.pgconn.socket], [], [], 0)
    except (OSError, ValueError) as error:
        raise DisconnectionError("connection socket unusable") from error
    if readable:
        raise DisconnectionError("the server closed the connection while it was idle")


def create_engine(settings: Settings, application_name: str) -> AsyncEngine:
    engine = create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        # No pre-ping round trip per checkout (see the module docstring): `_discard_if_closed`
        # plus one retry of a dropped read or never-committed write. A connection that fails
        # mid-statement is invalidated, and the pool retires all older ones with it.
        pool_pre_ping=False,
        # Waiting for a connection is bounded: a saturated pool answers UNAVAILABLE, not a hang.
        pool_timeout=settings.db_pool_timeout_s,
        connect_args={
            "application_name": application_name,
            "connect_timeout": settings.db_connect_timeout_s,
        },
    )
    event.listen(engine.sync_engine, "checkout", _discard_if_closed)
    if metrics.enabled():  # pool gauges, statement latency
        metrics.instrument_engine(engine, application_name)
    if tracing.enabled():  # a span per statement
        tracing.instrument_engine(engine)
    if settings.sql_statement_counting:
        event.listen(engine.sync_engine, "before_cursor_execute", sql_counting.count_statement)
    deadlines.install_statement_timeouts(engine, settings.db_statement_timeout_s)
    return engine


async def ping(engine: AsyncEngine) -> None:
    """Raises unless the database answers `SELECT 1`."""
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


def database_probe(engine: AsyncEngine, settings: Settings) -> HealthProbe:
    """The health probe of a service whose calls need this database."""

    async def check() -> None:
        await ping(engine)

    return HealthProbe(
        "postgresql",
        check,
        interval_s=settings.health_check_interval_s,
        timeout_s=settings.health_check_timeout_s,
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One unit of work: commits on success, rolls back on any exception."""
    async with sessions() as session, session.begin():
        yield session


def is_dropped_connection(error: BaseException) -> bool:
    """The statement failed because the connection was lost (SQLAlchemy invalidated it)."""
    return isinstance(error, DBAPIError) and error.connection_invalidated


def engine_of(sessions: async_sessionmaker[AsyncSession]) -> AsyncEngine:
    """The engine a session factory made by `session_factory` is bound to."""
    bind = sessions.kw["bind"]
    assert isinstance(bind, AsyncEngine)
    return bind


# The autocommit view of each engine (same pool), made once: `execution_options` builds a new
# engine object, ~40 µs, which per read would be a tenth of a whole GetCourse.
_AUTOCOMMIT: weakref.WeakKeyDictionary[AsyncEngine, AsyncEngine] = weakref.WeakKeyDictionary()


def _autocommit(engine: AsyncEngine) -> AsyncEngine:
    found = _AUTOCOMMIT.get(engine)
    if found is None:
        found = _AUTOCOMMIT[engine] = engine.execution_options(isolation_level="AUTOCOMMIT")
    return found


async def read(engine: AsyncEngine, work: Callable[[AsyncConnection], Awaitable[R]]) -> R:
    """`work` on a Core connection in autocommit: no ORM session, no BEGIN/ROLLBACK round trips
    (so a read of several statements sees no common snapshot: one statement per read where
    that matters). Retried once on a fresh connection when the connection was dropped."""
    autocommit = _autocommit(engine)
    try:
        async with autocommit.connect() as connection:
            return await work(connection)
    except DBAPIError as error:
        if not error.connection_invalidated:
            raise
        log.warning("database connection dropped; retrying the read once")
    async with autocommit.connect() as connection:
        return await work(connection)


async def write(
    sessions: async_sessionmaker[AsyncSession], work: Callable[[AsyncSession], Awaitable[R]]
) -> R:
    """`work` in one transaction (commit on success, rollback on any exception), retried once
    when the connection dropped before COMMIT was sent: the server rolled the transaction back,
    so nothing of the first attempt remains. `work` must do nothing but database work (it may
    run twice). A drop during COMMIT is not retried: the transaction may have committed."""
    committing = False
    try:
        async with sessions() as session:
            async with session.begin():
                result = await work(session)
                committing = True
            return result
    except DBAPIError as error:
        if committing or not error.connection_invalidated:
            raise
        log.warning("database connection dropped before commit; retrying the transaction once")
    async with sessions() as session, session.begin():
        return await work(session)
