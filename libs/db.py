"""Async SQLAlchemy engines and sessions, each bound to one service's schema.

Every service declares its tables on `schema_metadata(SCHEMA)`, so all SQL names the schema
explicitly and no service can reach another's tables by a search_path accident.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, MetaData, Row, Table, event, func, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from libs import deadlines, sql_counting
from libs.health_watch import HealthProbe
from libs.settings import Settings

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


def create_engine(settings: Settings, application_name: str) -> AsyncEngine:
    engine = create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        # A pooled connection is tested on checkout and replaced when the server went away, and
        # one that fails mid-statement is invalidated and discarded: after an outage the pool
        # reconnects by itself.
        pool_pre_ping=True,
        # Waiting for a connection is bounded: a saturated pool answers UNAVAILABLE, not a hang.
        pool_timeout=settings.db_pool_timeout_s,
        connect_args={
            "application_name": application_name,
            "connect_timeout": settings.db_connect_timeout_s,
        },
    )
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
