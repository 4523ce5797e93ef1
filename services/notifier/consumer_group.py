"""Consumer-group housekeeping done at start-up, before FastStream starts reading."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import ResponseError

# A consumer silent this long with nothing pending is a process that is gone for good.
STALE_CONSUMER_IDLE_MS = 24 * 3600 * 1000


async def ensure_group(redis: Redis, stream: str, group: str) -> bool:
    """Create the group reading from the start of the stream; True if it was created now.

    FastStream would create it at `$` (new entries only), silently skipping every completion
    published before the notifier first started; from `0` none is skipped.
    """
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
        return False
    return True


async def forget_stale_consumers(
    redis: Redis, stream: str, group: str, *, keep: str, idle_ms: int = STALE_CONSUMER_IDLE_MS
) -> list[str]:
    """Drop consumers of finished processes (per-process names pile up in XINFO otherwise).

    Only consumers with nothing pending are dropped: deleting one with pending entries would
    lose them, and those are reclaimed by live consumers anyway.
    """
    forgotten: list[str] = []
    for consumer in await redis.xinfo_consumers(stream, group):
        name = consumer["name"]
        name = name.decode() if isinstance(name, bytes) else str(name)
        if name != keep and int(consumer["pending"]) == 0 and int(consumer["idle"]) > idle_ms:
            await redis.xgroup_delconsumer(stream, group, name)
            forgotten.append(name)
    return forgotten
