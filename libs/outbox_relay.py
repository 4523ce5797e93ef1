"""The outbox relay: publishes committed outbox rows to their Redis stream, then marks them sent.

One implementation for every service with an outbox (libs/outbox.py): each runs it as a background
task of its gRPC server, over its own schema's table. Guarantees:
- nothing is lost: a row is marked sent only after Redis accepted its XADD; while Redis is
  down rows simply stay unsent (the writes that made them never wait for Redis) and the relay keeps
  retrying with a capped backoff, so publishing resumes by itself;
- several relays (replicas) share the table without publishing a row at the same time: each
  batch is claimed with `FOR UPDATE SKIP LOCKED` and the row locks are held until the batch is
  marked sent;
- it wakes on LISTEN/NOTIFY (the outbox insert NOTIFYs at commit) and polls every
  `outbox_poll_interval_s` as well, so a lost notification or a dropped LISTEN connection only
  delays a row by one poll.
Delivery to the stream is at least once: if the database fails after XADD but before the
"sent" mark commits, the row is published again later. Consumers deduplicate on `event_id`.
"""

from __future__ import annotations

import asyncio
import contextlib

import psycopg
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs import metrics, streams, tracing
from libs.backoff import backoff_delay
from libs.db import transaction
from libs.logging import get_logger
from libs.outbox import Outbox, OutboxRow
from libs.redis_client import redis_client
from libs.settings import Settings, to_libpq_url

log = get_logger("outbox")

# Retries while Redis or PostgreSQL is down back off up to this, so recovery is noticed quickly.
MAX_BACKOFF_S = 5.0


def stream_entry(row: OutboxRow, traceparent: str | None = None) -> dict[FieldT, EncodableT]:
    """The entry libs/streams.py defines, for one outbox row (`traceparent`: the publish span's,
    else the row's own)."""
    return streams.encode_entry(
        row.payload, str(row.event_id), row.event_type, traceparent or row.traceparent
    )


class OutboxRelay:
    def __init__(
        self,
        outbox: Outbox,
        sessions: async_sessionmaker[AsyncSession],
        *,
        database_url: str,
        redis_url: str,
        poll_interval_s: float,
        batch_size: int,
        stream_maxlen: int,
    ) -> None:
        self._outbox = outbox
        self._sessions = sessions
        self._database_url = to_libpq_url(database_url)
        self._redis_url = redis_url
        self._poll_interval_s = poll_interval_s
        self._batch_size = batch_size
        self._maxlen = stream_maxlen
        self._wake = asyncio.Event()
        self._redis: Redis | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, outbox: Outbox, sessions: async_sessionmaker[AsyncSession]
    ) -> OutboxRelay:
        return cls(
            outbox,
            sessions,
            database_url=settings.database_url,
            redis_url=settings.redis_url,
            poll_interval_s=settings.outbox_poll_interval_s,
            batch_size=settings.outbox_batch_size,
            stream_maxlen=settings.stream_maxlen,
        )

    async def run(self) -> None:
        """Publish until cancelled; never returns on an error."""
        self._redis = redis_client(self._redis_url)
        listener = asyncio.create_task(self._listen())
        failures = 0
        try:
            while True:
                try:
                    published = await self.publish_batch()
                    failures = 0
                # Redis or PostgreSQL down, or anything unforeseen: the relay must outlive it.
                except Exception as error:
                    failures += 1
                    metrics.OUTBOX_PUBLISH_FAILURES.labels(self._outbox.schema).inc()
                    delay = self._backoff(failures)
                    log.warning(
                        "outbox publish failed",
                        schema=self._outbox.schema,
                        error=repr(error),
                        retry_in_s=delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                if published == self._batch_size:
                    continue  # there may be more right away
                await self._wait_for_work()
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            await self._redis.aclose()

    async def publish_batch(self) -> int:
        """Publish up to one batch of unsent rows; returns how many were published."""
        assert self._redis is not None, "run() opens the Redis client"
        failure: RedisError | OSError | None = None
        async with transaction(self._sessions) as session:
            rows = await self._outbox.claim_unpublished(session, self._batch_size)
            published: list[int] = []
            for row in rows:
                try:
                    # A producer span in the trace of the request that wrote the row.
                    with tracing.hop_span(
                        f"{row.stream} publish", SpanKind.PRODUCER, row.traceparent
                    ) as traceparent:
                        await self._redis.xadd(
                            row.stream,
                            stream_entry(row, traceparent),
                            maxlen=self._maxlen,
                            approximate=True,
                        )
                except (RedisError, OSError) as error:
                    failure = error
                    await self._outbox.record_failure(session, row.id, repr(error))
                    break
                published.append(row.id)
            # What did get out is marked sent even when a later row failed; the rest stays
            # unsent for the next attempt.
            await self._outbox.mark_published(session, published)
        if failure is not None:
            raise failure
        if published:
            metrics.OUTBOX_PUBLISHED.labels(self._outbox.schema).inc(len(published))
            log.info("outbox published", schema=self._outbox.schema, count=len(published))
        return len(published)

    def _backoff(self, failures: int) -> float:
        return backoff_delay(failures, base_s=self._poll_interval_s, max_s=MAX_BACKOFF_S)

    async def _wait_for_work(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=self._poll_interval_s)
        self._wake.clear()

    async def _listen(self) -> None:
        """Set the wake event on every NOTIFY; reconnect after a failure (polling covers the gap)."""
        failures = 0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._database_url, autocommit=True
                ) as connection:
                    await connection.execute(f"LISTEN {self._outbox.channel}")
                    failures = 0
                    self._wake.set()  # rows may have arrived while we were not listening
                    async for _ in connection.notifies():
                        self._wake.set()
            except Exception as error:  # polling covers the gap while we reconnect
                failures += 1
                delay = self._backoff(failures)
                log.warning(
                    "outbox listen failed",
                    schema=self._outbox.schema,
                    error=repr(error),
                    retry_in_s=delay,
                )
                await asyncio.sleep(delay)
