"""Login throttling: failed logins counted per account and per client address, in Redis.

Built on the `limits` library's moving window (exact: "N failures in the last W seconds") over
its Redis storage, so every identity replica shares the counts. The check happens before any
password is hashed, so a flood of guesses costs no argon2 time.

Both counts are checked before the password is hashed and grow only on a failure, so
successful logins never count (an office behind one address, a user's devices logging in at
once, the bench's 16 parallel logins of one account are never throttled) and a success clears
the account's count. The price: failures sent in parallel are all checked before any of them is
counted, so a burst may overshoot a limit by its concurrency once; after that, every attempt is
refused until the window lets one go. (Reserving a slot atomically per attempt would close that
gap but throttle parallel successful logins of one account, which the limits API cannot refund
one at a time.)

Redis down: fail open to this replica's memory (the same limits, per replica) with one warning
per outage. Refusing every login while Redis is away would lock every user out because of a
counter store; unlimited guessing would hand attackers the outage. Degraded, never unlimited.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from libs.errors import RateLimited
from libs.logging import get_logger
from libs.settings import Settings

log = get_logger("identity.throttling")

KEY_PREFIX = "courseplatform:login"
# A login never waits long on an unreachable Redis; after a failure the local counts are used
# for a while without asking Redis again.
REDIS_TIMEOUT_S = 0.5
RETRY_REDIS_AFTER_S = 5.0
MESSAGE = "Too many failed login attempts. Try again later."


def limits_storage_uri(redis_url: str) -> str:
    """limits names its async Redis storage `async+redis://...` (`unix://` -> `async+redis+unix`)."""
    if redis_url.startswith("unix://"):
        return "async+redis+unix://" + redis_url.removeprefix("unix://")
    return "async+" + redis_url


@dataclass(frozen=True)
class Limits:
    account_max_failures: int
    ip_max_failures: int
    window_s: int


class LoginThrottle:
    def __init__(self, redis_url: str, limits: Limits) -> None:
        self._account = RateLimitItemPerSecond(limits.account_max_failures, limits.window_s)
        self._address = RateLimitItemPerSecond(limits.ip_max_failures, limits.window_s)
        shared = RedisStorage(
            limits_storage_uri(redis_url),
            implementation="redispy",
            wrap_exceptions=True,
            key_prefix=KEY_PREFIX,
            socket_connect_timeout=REDIS_TIMEOUT_S,
            socket_timeout=REDIS_TIMEOUT_S,
        )
        self._shared = MovingWindowRateLimiter(shared)
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._redis_retry_at = 0.0
        self._degraded = False

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginThrottle:
        return cls(
            settings.redis_url,
            Limits(
                account_max_failures=settings.login_account_max_failures,
                ip_max_failures=settings.login_ip_max_failures,
                window_s=settings.login_window_s,
            ),
        )

    async def before_attempt(self, account: str, address: str) -> None:
        """Raise RateLimited if the address or the account has used up its failures."""
        waits = []
        for item, kind, key in (
            (self._address, "address", address),
            (self._account, "account", account),
        ):
            if not await self._call("test", item, kind, key):
                waits.append(await self._retry_after(item, kind, key))
        if waits:
            raise RateLimited(max(waits), MESSAGE)

    async def failed(self, account: str, address: str) -> None:
        await self._call("hit", self._account, "account", account)
        await self._call("hit", self._address, "address", address)

    async def succeeded(self, account: str) -> None:
        await self._call("clear", self._account, "account", account)

    async def _retry_after(self, item: RateLimitItem, kind: str, key: str) -> int:
        stats = await self._call("get_window_stats", item, kind, key)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def _call(self, operation: str, item: RateLimitItem, kind: str, key: str) -> Any:
        if time.monotonic() >= self._redis_retry_at:
            try:
                result = await getattr(self._shared, operation)(item, kind, key)
            except StorageError as error:
                self._redis_failed(error)
            else:
                if self._degraded:
                    self._degraded = False
                    log.info("login throttling counts in Redis again")
                return result
        return await getattr(self._local, operation)(item, kind, key)

    def _redis_failed(self, error: StorageError) -> None:
        if not self._degraded:
            self._degraded = True
            log.warning(
                "login throttling cannot reach Redis; counting in this replica's memory",
                error=repr(error.storage_error),
            )
        self._redis_retry_at = time.monotonic() + RETRY_REDIS_AFTER_S
