"""The outbox backlog as gauges: rows not yet published and the age of the oldest, per schema.

A background task of each server with an outbox samples them every `metrics_sample_interval_s`
(one index-only query on the unpublished rows' partial index), so a scrape never touches the
database and any number of replicas report the same numbers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs import metrics
from libs.logging import get_logger
from libs.outbox import Outbox
from libs.settings import Settings

log = get_logger("outbox")


async def sample_backlog(outbox: Outbox, sessions: async_sessionmaker[AsyncSession]) -> None:
    """Read the backlog once and set the gauges."""
    table = outbox.table.c
    statement = sa.select(
        sa.func.count(),
        sa.func.coalesce(
            sa.func.extract("epoch", sa.func.clock_timestamp() - sa.func.min(table.created_at)), 0
        ),
    ).where(table.published_at.is_(None))
    async with sessions() as session:
        count, oldest_age_s = (await session.execute(statement)).one()
    metrics.OUTBOX_UNPUBLISHED.labels(outbox.schema).set(count)
    metrics.OUTBOX_OLDEST_AGE.labels(outbox.schema).set(max(0.0, float(oldest_age_s)))


def backlog_sampler(
    settings: Settings, outbox: Outbox, sessions: async_sessionmaker[AsyncSession]
) -> Callable[[], Coroutine[Any, Any, None]]:
    """A background task for ServiceDefinition.background_tasks; a no-op with metrics off."""

    async def run() -> None:
        if not metrics.enabled():
            return
        while True:
            try:
                await sample_backlog(outbox, sessions)
            except Exception as error:  # the database is down: the gauges keep their last value
                log.debug("outbox backlog sample failed", schema=outbox.schema, error=repr(error))
            await asyncio.sleep(settings.metrics_sample_interval_s)

    return run
