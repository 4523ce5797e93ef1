"""Recovery after Redis lost stream entries: publish a service's outbox events of a time range again.

The outbox keeps every event after the relay published it, so whatever Redis lost (a restart
without persistence, the last second before a crash with `appendfsync everysec`, a deleted stream)
can be put back: the same stream, the same entry fields and event ids as the relay wrote
(`libs.outbox_relay.stream_entry`). Consumers deduplicate on the event id (the notifier's sent record),
so republishing events that were already handled changes nothing.

Only rows the relay has published are taken; unpublished ones are still the relay's job. Rows are
chosen by `created_at` (when the event happened) and read in keyset batches of
`outbox_batch_size`, so the range can be as long as it needs to be.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs.db import create_engine, session_factory, transaction
from libs.logging import get_logger
from libs.outbox import Outbox
from libs.outbox_relay import stream_entry
from libs.redis_client import redis_client
from libs.settings import Settings

log = get_logger("outbox.republish")


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
    outbox: Outbox,
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
            rows = await outbox.published_between(
                session, window.since, window.until, after_id=after_id, limit=batch_size
            )
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


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `republish --since <ISO> [--until <ISO>]` subcommand of a service's entry point."""
    again = commands.add_parser(
        "republish",
        help="publish the outbox events of a time range again (after Redis lost entries)",
    )
    again.add_argument("--since", required=True, help="ISO 8601 timestamp, inclusive")
    again.add_argument("--until", help="ISO 8601 timestamp, exclusive (default: now)")


async def _republish_range(
    settings: Settings, outbox: Outbox, application_name: str, window: TimeRange
) -> dict[str, int]:
    engine = create_engine(settings, application_name)
    redis = redis_client(settings.redis_url)
    try:
        return await republish(
            outbox,
            session_factory(engine),
            redis,
            window,
            batch_size=settings.outbox_batch_size,
            stream_maxlen=settings.stream_maxlen,
        )
    finally:
        await redis.aclose()
        await engine.dispose()


def run_command(
    settings: Settings, outbox: Outbox, application_name: str, args: argparse.Namespace
) -> None:
    """Run `republish` as parsed by `add_command`: prints the counts; exits 2 on a bad range,
    1 when Redis or PostgreSQL cannot be reached."""
    try:
        window = TimeRange.parse(args.since, args.until, now=datetime.now(UTC))
    except BadRange as exc:
        # As argparse reports a usage error: the message on stderr, exit status 2.
        sys.stderr.write(f"republish: error: {exc}\n")
        sys.exit(2)
    try:
        counts = asyncio.run(_republish_range(settings, outbox, application_name, window))
    except (RedisError, SQLAlchemyError, OSError) as exc:
        # Safe to run again: consumers drop the events already handled.
        sys.exit(f"republish failed (run it again once Redis and PostgreSQL answer): {exc!r}")
    streams = ", ".join(f"{stream}: {count}" for stream, count in sorted(counts.items()))
    print(
        f"republished {sum(counts.values())} event(s) created from {window.since.isoformat()} "
        f"until {window.until.isoformat()}" + (f" ({streams})" if streams else "")
    )
