"""Learning's reader of catalog's CourseChanged stream: the events that make its lesson copies stale.

Each event only names a course and its new version (it carries no lessons), so the reader does
one thing: raise `course_lessons.latest_version` (store.announce_versions, one idempotent
statement per batch). A copy whose version is below it is stale and the next read refreshes it
from the catalog with the student's token (usecases/lesson_copies.py): learning makes no catalog
call in the background, needs no service identity, and visibility stays catalog's decision.

Every replica reads every entry (plain XREAD, no consumer group): a replica trusts the copies
only while its *own* reader has seen every event since a known moment (`events_seen_since`),
which a group could not tell it (entries delivered to another replica, or pending on a dead
one, would be invisible to it). The copies live in PostgreSQL, so the duplicate updates of N
replicas are N identical idempotent upserts, and one refresh serves every replica.

Trust is lost at once on any error (Redis down, a dropped connection, a restarted Redis that may
have lost entries) and when no read has completed for a while (a hung Redis); after
reconnecting the reader starts from the stream's current end, so events written while it was
away are never read: instead, copies confirmed by the catalog before the new start are not
trusted (domain.copy_is_trusted) and are confirmed again on their next read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from courseplatform.events.v1 import events_pb2
from google.protobuf.message import DecodeError
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs import streams
from libs.backoff import backoff_delay
from libs.db import transaction
from libs.logging import get_logger
from libs.redis_client import redis_timeouts
from services.learning import store

log = get_logger("learning.course_changes")

# XREAD blocks this long when nothing is new, so a healthy reader completes a read at least this
# often; trust ends when none has completed for BLOCK_S + STALL_S (a Redis that hangs without
# closing the connection: the socket timeout alone would take 6 s). STALL_S leaves room for a
# busy event loop.
BLOCK_S = 1.0
STALL_S = 2.0
BATCH = 500
MAX_BACKOFF_S = 5.0

StreamEntries = Sequence[tuple[bytes, dict[bytes, bytes]]]


def announced_versions(entries: StreamEntries) -> dict[int, int]:
    """The highest version each course's events announce (malformed entries are skipped: there
    is nothing to retry about them, and a later event or the copy's age covers what they said)."""
    versions: dict[int, int] = {}
    for entry_id, fields in entries:
        entry = streams.decode_entry(fields)
        if entry.type != streams.COURSE_CHANGED_TYPE or entry.event is None:
            log.warning("skipping a stream entry that is no CourseChanged", entry_id=entry_id)
            continue
        try:
            event = events_pb2.CourseChanged.FromString(entry.event)
        except DecodeError:
            log.warning("skipping an undecodable CourseChanged", entry_id=entry_id)
            continue
        if event.course_id > 0 and event.version > versions.get(event.course_id, 0):
            versions[event.course_id] = event.version
    return versions


class CourseChangeReader:
    """Background task of the learning server (`run`), and the health the copies rely on."""

    def __init__(
        self,
        redis_url: str,
        sessions: async_sessionmaker[AsyncSession],
        *,
        block_s: float = BLOCK_S,
    ) -> None:
        self._redis_url = redis_url
        self._sessions = sessions
        self._block_s = block_s
        # Wall-clock moment from which every event has been seen (None: not healthy), and the
        # monotonic time of the last read that completed.
        self._since: datetime | None = None
        self._last_read = 0.0

    def events_seen_since(self) -> datetime | None:
        """Since when this reader has seen every CourseChanged event without interruption, or
        None when it cannot say (Redis down or not answering): then no copy is trusted."""
        if self._since is None:
            return None
        if time.monotonic() - self._last_read > self._block_s + STALL_S:
            return None
        return self._since

    async def run(self) -> None:
        """Read until cancelled; never returns on an error."""
        # No silent retries: a dropped connection must end trust, not be papered over.
        redis = Redis.from_url(
            self._redis_url, retry=Retry(NoBackoff(), 0), **redis_timeouts(self._block_s)
        )
        failures = 0
        try:
            while True:
                try:
                    await self._follow(redis)
                except Exception as error:  # Redis or PostgreSQL down: retry, trust nothing
                    self._since = None
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        # A driver turned our cancellation into its own error: stop anyway, or
                        # the server's stop would wait for this task forever.
                        raise asyncio.CancelledError from error
                    failures += 1
                    delay = backoff_delay(failures, base_s=0.1, max_s=MAX_BACKOFF_S)
                    log.warning(
                        "catalog change events unreadable; lesson copies untrusted",
                        error=repr(error),
                        retry_in_s=round(delay, 2),
                    )
                    await asyncio.sleep(delay)
                else:
                    failures = 0
        finally:
            self._since = None
            await redis.aclose()

    async def _follow(self, redis: Redis) -> None:
        stream = streams.COURSE_CHANGED_STREAM
        # Start at the stream's current end: everything added after this is read. Trust starts
        # only once the end is known (an entry added before it is never read).
        newest: Any = await redis.xrevrange(stream, "+", "-", count=1)
        last_id: bytes | str = newest[0][0] if newest else "0-0"
        self._last_read = time.monotonic()
        self._since = datetime.now(UTC)
        log.info("following catalog change events", stream=stream)
        while True:
            # RESP2 shape: [[stream, [(entry id, fields), ...]]], or empty after BLOCK_S.
            reply: Any = await redis.xread(
                {stream: last_id}, count=BATCH, block=int(self._block_s * 1000)
            )
            entries: StreamEntries = reply[0][1] if reply else []
            if entries:
                versions = announced_versions(entries)
                async with transaction(self._sessions) as session:
                    await store.announce_versions(session, versions)
                last_id = entries[-1][0]
            self._last_read = time.monotonic()
