"""Recovery after Redis lost stream entries: publish the outbox events of a time range again.

The outbox keeps every event after the relay published it, so whatever Redis lost (a restart
without persistence, the last second before a crash with `appendfsync everysec`, a deleted stream)
can be put back: the same stream, the same entry fields and event ids as the relay wrote
(`outbox_relay.stream_entry`). Consumers deduplicate on the event id (the notifier's sent record),
so republishing events that were already handled changes nothing.

Only rows the relay has published are taken; unpublished ones are still the relay's job. Rows are
chosen by `created_at` (when the event happened) and read in keyset batches of
`outbox_batch_size`, so the range can be as long as it needs to be.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs.db import transaction
from libs.logging import get_logger
from services.learning import store
from services.learning.outbox_relay import stream_entry

log = get_logger("learning.republish")


class BadRange(ValueError):
    pass


@dataclass(frozen=True)
class TimeRange:
    since: datetime
    until: datetime

    @classmethod
    def parse(cls, since: str, until: str | None, now: datetime) -> TimeRange:
        start = parse_timestamp(since, "--since")
        end = parse_timestamp(until, "--until") if until is not None else now
        if end <= start:
            raise BadRange(f"--until ({end.isoformat()}) must be later than --since")
        return cls(start, end)


def parse_timestamp(value: str, option: str) -> datetime:
    """ISO 8601; a timestamp without an offset is taken as UTC (as the REST API writes them)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadRange(
            f"{option}: {value!r} is not an ISO 8601 timestamp (e.g. 2026-11-27T10:15:00Z)"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


async def republish(
    sessions: async_sessionmaker[AsyncSession],
    redis: Redis,
    window: TimeRange,
    *,
    batch_size: int,
    stream_maxlen: int,
) -> dict[str, int]:
    """XADD every published outbox event created in [since, until); returns counts per stream."""
    counts: dict[str, int] = {}
    after_id = 0
    while True:
        async with transaction(sessions) as session:
            rows = await _published_batch(session, window, after_id, batch_size)
        if not rows:
            return counts
        async with redis.pipeline(transaction=False) as pipeline:
            for row in rows:
                pipeline.xadd(
                    row.stream,
                    stream_entry(row),
                    maxlen=stream_maxlen,
                    approximate=True,
                )
            await pipeline.execute()
        for row in rows:
            counts[row.stream] = counts.get(row.stream, 0) + 1
        after_id = rows[-1].id
        log.info("outbox events republished", count=len(rows), up_to_outbox_id=after_id)


async def _published_batch(
    session: AsyncSession, window: TimeRange, after_id: int, limit: int
) -> list[store.OutboxRow]:
    outbox = store.outbox.c
    statement = (
        sa.select(outbox.id, outbox.event_id, outbox.stream, outbox.event_type, outbox.payload)
        .where(
            outbox.created_at >= window.since,
            outbox.created_at < window.until,
            outbox.published_at.is_not(None),
            outbox.id > after_id,
        )
        .order_by(outbox.id)
        .limit(limit)
    )
    return [store.OutboxRow(**row._mapping) for row in await session.execute(statement)]
