"""The Redis client every process opens, with the timeouts that keep an outage from hanging it."""

from __future__ import annotations

from typing import TypedDict

from redis.asyncio import Redis

# A Redis that stops answering surfaces as an error after this long instead of a hung call.
REDIS_TIMEOUT_S = 5.0


class RedisTimeouts(TypedDict):
    socket_connect_timeout: float
    socket_timeout: float


def redis_timeouts(blocking_read_s: float = 0.0) -> RedisTimeouts:
    """Connect and socket timeouts as redis-py and FastStream's RedisBroker take them; a client
    that blocks on reads (XREADGROUP BLOCK) gets that long on top, or every idle read would time out."""
    return {
        "socket_connect_timeout": REDIS_TIMEOUT_S,
        "socket_timeout": REDIS_TIMEOUT_S + blocking_read_s,
    }


def redis_client(url: str, *, blocking_read_s: float = 0.0) -> Redis:
    """A client for `url` (no decode_responses: stream fields come back as bytes)."""
    return Redis.from_url(url, **redis_timeouts(blocking_read_s))
