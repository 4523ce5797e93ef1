"""How long a consumer holds an event, and how soon another takes over when it dies.

A consumer that claims an event (services/notifier/store.py `claim`) holds it under a lease of
`notifier_lease_s` and, while it works on the event, renews it every third of that (the
heartbeat below). The same heartbeat resets the stream entry's idle time, so the reclaimer of
another consumer never takes an entry whose sender is alive, however slow the SMTP server is.
When the sender dies, both stop at once: its entry turns reclaimable after the reclaim idle time
and, as long as the lease is not longer than that idle time, the claim has expired by then.

Pure arithmetic first (tested against the defaults), then the heartbeat itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from datetime import timedelta

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs.db import transaction
from libs.logging import get_logger
from services.notifier import store

log = get_logger("notifier")

# Renewals per lease: two may be missed (a slow transaction, a busy loop) before it runs out.
RENEWALS_PER_LEASE = 3


def renew_interval_s(lease_s: float) -> float:
    return lease_s / RENEWALS_PER_LEASE


def reclaim_poll_ms(reclaim_idle_ms: int) -> int:
    """How long the reclaimer sleeps when XAUTOCLAIM found nothing (a quarter of the idle time)."""
    return max(100, min(5000, reclaim_idle_ms // 4))


def takeover_bound_s(reclaim_idle_ms: int, lease_s: float) -> float:
    """Longest time from a sender's death until another consumer claims its event.

    The entry turns reclaimable `idle` after the last heartbeat and is found within one poll.
    A lease still running then gets the claim refused and the entry waits another idle time
    (XAUTOCLAIM reset it), hence the rounds. The new owner's SMTP attempt comes on top.
    """
    idle_s = reclaim_idle_ms / 1000
    rounds = max(1, math.ceil(lease_s / idle_s))
    return rounds * (idle_s + reclaim_poll_ms(reclaim_idle_ms) / 1000)


class Heartbeat:
    """Keeps one claimed event this consumer's while it works on it: lease and entry idle time."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        redis: Redis,
        stream: str,
        group: str,
        consumer: str,
        lease: timedelta,
    ) -> None:
        self._sessions = sessions
        self._redis = redis
        self._stream = stream
        self._group = group
        self._consumer = consumer
        self._lease = lease

    @contextlib.asynccontextmanager
    async def holding(self, event_id: str, entry_id: str) -> AsyncIterator[None]:
        """Renew while the block runs; stopped (and awaited) before the block's result is used,
        so no renewal can land after a release."""
        task = asyncio.create_task(self._beat(event_id, entry_id), name=f"heartbeat-{event_id}")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _beat(self, event_id: str, entry_id: str) -> None:
        interval = renew_interval_s(self._lease.total_seconds())
        while True:
            await asyncio.sleep(interval)
            # The lease first: the entry must never look fresh in Redis with its claim expired.
            try:
                async with transaction(self._sessions) as session:
                    held = await store.renew(session, event_id, self._consumer, self._lease)
                if not held:
                    log.warning("lost the claim on an event being mailed", event_id=event_id)
            except (SQLAlchemyError, OSError) as exc:
                # PostgreSQL down: nobody can claim the event meanwhile either.
                log.warning("renewing the claim failed", event_id=event_id, error=repr(exc))
            try:
                # XCLAIM to ourselves with min-idle 0 resets the idle time; JUSTID leaves the
                # delivery counter alone.
                await self._redis.xclaim(
                    self._stream, self._group, self._consumer, 0, [entry_id], justid=True
                )
            except (RedisError, OSError) as exc:
                log.warning("refreshing the entry's idle time failed", error=repr(exc))
