"""Each gateway process follows catalog's CourseChanged stream and drops what changed from its
course cache (gateway/course_cache.py; docs/gateway.md "Course cache").

A plain XREAD from the last id seen, no consumer group: every worker process must see every
event. On each (re)connection the reader first asks where the stream ends, then clears the
cache (whatever changed while it was away is unknown) and reads on from there. Every XREAD
blocks at most `block_ms`, so a healthy reader is heard from several times within the
cache's freshness bound; a connection that fails, or a Redis that stops answering, stops the
cache from serving at once or within that bound.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol, cast

from courseplatform.events.v1 import events_pb2
from google.protobuf.message import DecodeError
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from libs import streams
from libs.backoff import backoff_delay
from libs.logging import get_logger
from libs.redis_client import redis_timeouts

log = get_logger("gateway.course_events")

# Events taken per XREAD; a backlog is worked through in batches of this size.
BATCH = 500
RECONNECT_BASE_S = 0.1
RECONNECT_MAX_S = 2.0


# What XRANGE/XREAD answer without decode_responses (redis-py types them loosely).
Entries = list[tuple[bytes, dict[bytes, bytes]]]


class ChangeSink(Protocol):
    def reader_synced(self) -> None: ...
    def reader_asking(self) -> float: ...
    def reader_heard(self, asked_at: float) -> None: ...
    def reader_lost(self) -> None: ...
    def course_changed(self, course_id: int) -> None: ...
    def everything_changed(self) -> None: ...


def changed_course_id(fields: dict[bytes, bytes]) -> int | None:
    """The course an entry names, None when it is not a readable CourseChanged."""
    entry = streams.decode_entry(fields)
    if entry.type != streams.COURSE_CHANGED_TYPE or entry.event is None:
        return None
    try:
        return events_pb2.CourseChanged.FromString(entry.event).course_id or None
    except DecodeError:
        return None


class CourseChangeReader:
    def __init__(self, redis_url: str, sink: ChangeSink, *, block_ms: int = 250) -> None:
        self._redis_url = redis_url
        self._sink = sink
        self._block_ms = block_ms
        self._task: asyncio.Task[None] | None = None
        self._failures = 0
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="course-change-reader")

    async def stop(self) -> None:
        """Cancel the reader, again until it is gone: redis-py swallows a cancellation that
        lands while it is connecting (the reader then went on, and the gateway's shutdown
        waited for it forever)."""
        self._stopping = True
        task = self._task
        if task is None:
            return
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            task.result()
        self._sink.reader_lost()

    async def _run(self) -> None:
        while not self._stopping:
            # No retries inside redis-py: a reconnection it made silently would hide a gap in
            # what this reader saw; every reconnection goes through a resync instead.
            client = Redis.from_url(
                self._redis_url,
                retry=Retry(NoBackoff(), 0),
                **redis_timeouts(self._block_ms / 1000),
            )
            try:
                await self._follow(client)
            except Exception as error:  # whatever it was, the cache must not trust itself
                self._sink.reader_lost()
                if self._stopping:
                    return
                if self._failures == 0:  # once per outage, not once per attempt
                    log.warning("course_events_lost", error=f"{type(error).__name__}: {error}")
                delay = backoff_delay(
                    self._failures, base_s=RECONNECT_BASE_S, max_s=RECONNECT_MAX_S, jitter=0.2
                )
                self._failures += 1
                await asyncio.sleep(delay)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await client.aclose()

    async def _follow(self, client: Redis) -> None:
        """Sync, then apply events as they come; returns only by raising."""
        last = cast(Entries, await client.xrevrange(streams.COURSE_CHANGED_STREAM, count=1))
        position: bytes | str = last[0][0] if last else "0-0"
        self._sink.reader_synced()
        log.info("course_events_synced", after_failures=self._failures)
        self._failures = 0
        while True:
            asked_at = self._sink.reader_asking()
            reply = cast(
                list[tuple[bytes, Entries]],
                await client.xread(
                    {streams.COURSE_CHANGED_STREAM: position}, count=BATCH, block=self._block_ms
                ),
            )
            for _stream, entries in reply:
                for entry_id, fields in entries:
                    course_id = changed_course_id(fields)
                    if course_id is None:
                        # Unreadable: which course changed is unknown, so nothing cached is sure.
                        log.warning("course_event_unreadable", entry_id=entry_id.decode())
                        self._sink.everything_changed()
                    else:
                        self._sink.course_changed(course_id)
                    position = entry_id
            self._sink.reader_heard(asked_at)
