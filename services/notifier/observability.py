"""What the notifier tells an operator: stream and mail metrics, and whether it is degraded.

Degraded is not unready: readiness (`/health` 200 or 503) stays about whether this notifier can
consume (Redis, PostgreSQL, subscribers). Degraded says mail is not getting out: SMTP has not
accepted anything for longer than NOTIFIER_DEGRADED_SMTP_S since it started failing, or a dead
letter was written within the last NOTIFIER_DEGRADED_INTERVAL_S (the newest dead letter's stream
id holds its time, so every replica sees the same, whoever wrote it). `/health` lists the
reasons and `courseplatform_notifier_degraded{reason}` is 1 for each.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from libs import metrics

SMTP_FAILING = "smtp_failing"
DEAD_LETTERS_GREW = "dead_letters_grew"
REASONS = (SMTP_FAILING, DEAD_LETTERS_GREW)


@dataclass
class SmtpHealth:
    """Since when the transport has been refusing or unreachable (None: its last try worked)."""

    failing_since: float | None = None
    clock: Any = field(default=time.time, repr=False)

    def failed(self) -> None:
        if self.failing_since is None:
            self.failing_since = self.clock()

    def accepted(self) -> None:
        self.failing_since = None


def degraded_reasons(
    *,
    now: float,
    smtp_failing_since: float | None,
    smtp_threshold_s: float,
    newest_dead_letter_at: float | None,
    dead_letter_interval_s: float,
) -> list[str]:
    """The rule, as a pure function of what was observed (times in seconds since the epoch)."""
    reasons = []
    if smtp_failing_since is not None and now - smtp_failing_since >= smtp_threshold_s:
        reasons.append(SMTP_FAILING)
    if newest_dead_letter_at is not None and now - newest_dead_letter_at <= dead_letter_interval_s:
        reasons.append(DEAD_LETTERS_GREW)
    return reasons


def entry_time(entry_id: bytes | str) -> float:
    """A stream entry id's time (`<ms>-<seq>`), in seconds since the epoch."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0]) / 1000


async def newest_entry_time(redis: Redis, stream: str) -> float | None:
    newest = await redis.xrevrange(stream, count=1)
    return entry_time(newest[0][0]) if newest and newest[0][0] is not None else None


async def sample_streams(redis: Redis, stream: str, dead_letter_stream: str, group: str) -> None:
    """Stream length, the group's pending count and lag, and the dead-letter length, as gauges."""
    pipe = redis.pipeline(transaction=False)
    pipe.xlen(stream)
    pipe.xlen(dead_letter_stream)
    length, dead_letters = await pipe.execute()
    metrics.STREAM_LENGTH.labels(stream).set(length)
    metrics.STREAM_LENGTH.labels(dead_letter_stream).set(dead_letters)
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:  # no stream (nothing published yet, or Redis lost it)
        groups = []
    for info in groups:
        name = info.get("name")
        name = name.decode() if isinstance(name, bytes) else str(name)
        if name != group:
            continue
        metrics.STREAM_GROUP_PENDING.labels(stream, group).set(int(info.get("pending") or 0))
        # `lag` is Redis 7+, and null when Redis cannot tell (after XDEL/XTRIM of unread entries).
        lag = info.get("lag")
        if lag is not None:
            metrics.STREAM_GROUP_LAG.labels(stream, group).set(int(lag))


@dataclass
class Observer:
    """The notifier's view for `/health` and `/metrics`, sampled when asked."""

    redis: Redis
    stream: str
    dead_letter_stream: str
    group: str
    smtp: SmtpHealth
    smtp_threshold_s: float
    dead_letter_interval_s: float

    async def degraded(self) -> list[str]:
        try:
            newest = await newest_entry_time(self.redis, self.dead_letter_stream)
        except (RedisError, OSError):
            newest = None  # Redis down is readiness's business, reported there
        reasons = degraded_reasons(
            now=time.time(),
            smtp_failing_since=self.smtp.failing_since,
            smtp_threshold_s=self.smtp_threshold_s,
            newest_dead_letter_at=newest,
            dead_letter_interval_s=self.dead_letter_interval_s,
        )
        for reason in REASONS:
            metrics.NOTIFIER_DEGRADED.labels(reason).set(1 if reason in reasons else 0)
        return reasons

    async def scrape(self) -> tuple[bytes, str]:
        # Redis down: the gauges keep their last values; readiness reports the outage.
        with contextlib.suppress(RedisError, OSError):
            await sample_streams(self.redis, self.stream, self.dead_letter_stream, self.group)
        await self.degraded()
        return metrics.exposition()
