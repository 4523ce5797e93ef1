"""Prompt revocation of access tokens: identity publishes, every verifier keeps them in memory.

A revocation names either one session (the refresh family of one login: logout, reuse detection)
or a user's every token issued up to an instant (deactivation, password change). Identity XADDs a
`TokensRevoked` event to one Redis stream; every verifier (each gateway worker, each service
replica) reads that stream into a `RevocationList` and `TokenVerifier` consults it after the
signature, cached tokens included, so a revoked token is refused within about a second (one
XREAD BLOCK) without a call to identity per request.

Why a stream and not pub/sub: a verifier that starts (or restarts, or lost its Redis connection
for a while) must also know the revocations made before it was listening. A stream keeps them:
it reads back everything younger than the access-token lifetime (older ones cover only expired
tokens) and then follows the stream from the last id it saw, so a reconnect misses nothing.
Pub/sub would drop whatever was published while nobody listened.

A verifier that cannot reach Redis keeps every revocation it already holds (nothing here ever
drops one before it expires) and logs an error while the outage lasts.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from courseplatform.events.v1 import revocations_pb2
from redis.asyncio import Redis
from redis.exceptions import RedisError

from libs import streams
from libs.backoff import backoff_delay
from libs.claims import Claims
from libs.logging import get_logger
from libs.outages import describe
from libs.proto_time import to_timestamp
from libs.redis_client import redis_client
from libs.settings import Settings

log = get_logger("revocations")

# Extra time a revocation is kept (and read back) past the access-token lifetime, for clocks
# that disagree a little between identity, Redis and the verifiers.
CLOCK_MARGIN_S = 60.0
# How long one XREAD waits for new entries: the bound on how late a verifier hears of one.
BLOCK_MS = 1000
# While Redis is unreachable the error is repeated this often, not on every retry.
OUTAGE_LOG_EVERY_S = 10.0
MAX_BACKOFF_S = 2.0


@dataclass(frozen=True)
class Revocation:
    user_id: int
    # Non-empty: every token of this session; else every token issued at or before
    # `issued_before` (epoch seconds).
    session_id: str = ""
    issued_before: float | None = None
    # Epoch seconds after which every token it covers has expired.
    expires_at: float = 0.0
    reason: str = ""
    event_id: str = ""


def session_revocation(
    user_id: int, session_id: str, *, lifetime_s: float, reason: str, now: float | None = None
) -> Revocation:
    now = time.time() if now is None else now
    return Revocation(
        user_id=user_id,
        session_id=session_id,
        expires_at=now + lifetime_s + CLOCK_MARGIN_S,
        reason=reason,
        event_id=uuid.uuid4().hex,
    )


def user_revocation(
    user_id: int, *, lifetime_s: float, reason: str, now: float | None = None
) -> Revocation:
    now = time.time() if now is None else now
    return Revocation(
        user_id=user_id,
        issued_before=now,
        expires_at=now + lifetime_s + CLOCK_MARGIN_S,
        reason=reason,
        event_id=uuid.uuid4().hex,
    )


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def encode(revocation: Revocation) -> bytes:
    event = revocations_pb2.TokensRevoked(
        event_id=revocation.event_id,
        user_id=revocation.user_id,
        session_id=revocation.session_id,
        reason=revocation.reason,
        occurred_at=to_timestamp(datetime.now(UTC)),
        expires_at=to_timestamp(_at(revocation.expires_at)),
    )
    if revocation.issued_before is not None:
        event.issued_before.FromMicroseconds(round(revocation.issued_before * 1e6))
    return event.SerializeToString()


def decode(payload: bytes) -> Revocation | None:
    """The revocation an entry carries, or None for one that names nothing (logged, skipped)."""
    event = revocations_pb2.TokensRevoked.FromString(payload)
    issued_before = (
        event.issued_before.ToMicroseconds() / 1e6 if event.HasField("issued_before") else None
    )
    if not event.session_id and issued_before is None:
        return None
    return Revocation(
        user_id=event.user_id,
        session_id=event.session_id,
        issued_before=issued_before,
        expires_at=event.expires_at.ToMicroseconds() / 1e6,
        reason=event.reason,
        event_id=event.event_id,
    )


class RevocationList:
    """The revocations one verifier enforces, in memory. Lookups are two dict reads."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        # session id -> forget after
        self._sessions: dict[str, float] = {}
        # user id -> (refuse tokens issued at or before, forget after)
        self._users: dict[int, tuple[float, float]] = {}

    def add(self, revocation: Revocation) -> None:
        if revocation.session_id:
            known = self._sessions.get(revocation.session_id, 0.0)
            self._sessions[revocation.session_id] = max(known, revocation.expires_at)
        elif revocation.issued_before is not None:
            before, until = self._users.get(revocation.user_id, (float("-inf"), 0.0))
            self._users[revocation.user_id] = (
                max(before, revocation.issued_before),
                max(until, revocation.expires_at),
            )

    def is_revoked(self, claims: Claims) -> bool:
        if claims.session_id and claims.session_id in self._sessions:
            return True
        user = self._users.get(claims.user_id)
        if user is None:
            return False
        # A token without an issue time cannot be placed after the revocation: refused.
        issued = claims.issued_at.timestamp() if claims.issued_at is not None else float("-inf")
        return issued <= user[0]

    def prune(self) -> None:
        """Forget revocations whose every token has expired (they could refuse nothing)."""
        now = self._clock()
        self._sessions = {sid: until for sid, until in self._sessions.items() if until > now}
        self._users = {uid: entry for uid, entry in self._users.items() if entry[1] > now}

    def __len__(self) -> int:
        return len(self._sessions) + len(self._users)


def retention_s(settings: Settings) -> float:
    """How long a revocation matters: the longest an access token issued before it lives."""
    return float(settings.jwt_access_ttl_s + settings.jwt_leeway_s)


class RevocationPublisher:
    """Identity's side: XADD each revocation, and apply it to identity's own list at once."""

    def __init__(
        self, redis: Redis, revocations: RevocationList | None, *, lifetime_s: float, maxlen: int
    ) -> None:
        self._redis = redis
        self._revocations = revocations
        self.lifetime_s = lifetime_s
        self._maxlen = maxlen

    @classmethod
    def from_settings(
        cls, settings: Settings, revocations: RevocationList | None
    ) -> RevocationPublisher:
        return cls(
            redis_client(settings.redis_url),
            revocations,
            lifetime_s=retention_s(settings),
            maxlen=settings.stream_maxlen,
        )

    async def publish(self, revocation: Revocation) -> None:
        """Raises a Redis error when the stream does not take it (callers roll back)."""
        fields = streams.encode_entry(
            encode(revocation), revocation.event_id, streams.TOKENS_REVOKED_TYPE
        )
        await self._redis.xadd(
            streams.TOKENS_REVOKED_STREAM, fields, maxlen=self._maxlen, approximate=True
        )
        if self._revocations is not None:
            self._revocations.add(revocation)
        log.info(
            "tokens revoked",
            user_id=revocation.user_id,
            scope="session" if revocation.session_id else "user",
            reason=revocation.reason,
        )

    async def close(self) -> None:
        await self._redis.aclose()


# Stream entries as redis-py answers them without decode_responses.
Entries = list[tuple[bytes, dict[bytes, bytes]]]


class RevocationFeed:
    """A verifier's side: reads the stream's recent entries at start, then follows it."""

    def __init__(
        self,
        redis_url: str,
        revocations: RevocationList,
        *,
        retention_s: float,
        block_ms: int = BLOCK_MS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis_url = redis_url
        self._revocations = revocations
        self._retention_s = retention_s
        self._block_ms = block_ms
        self._clock = clock
        self._last_id: str | None = None
        self._outage_since: float | None = None
        self._outage_logged_at = 0.0

    @classmethod
    def from_settings(cls, settings: Settings, revocations: RevocationList) -> RevocationFeed:
        return cls(settings.redis_url, revocations, retention_s=retention_s(settings))

    @property
    def loaded(self) -> bool:
        return self._last_id is not None

    def _apply(self, entries: Entries) -> None:
        for entry_id, fields in entries:
            self._last_id = entry_id.decode()
            entry = streams.decode_entry(fields)
            if entry.type != streams.TOKENS_REVOKED_TYPE or entry.event is None:
                continue
            try:
                revocation = decode(entry.event)
            except Exception as error:  # a malformed entry must not stop the feed
                log.error("bad revocation entry", entry_id=self._last_id, error=repr(error))
                continue
            if revocation is not None:
                self._revocations.add(revocation)

    async def _load(self, redis: Redis) -> None:
        # Stream ids are Redis's clock in milliseconds: every entry younger than the retention.
        since_ms = int((self._clock() - self._retention_s - CLOCK_MARGIN_S) * 1000)
        start = f"{max(since_ms, 0)}-0"
        entries = await redis.xrange(streams.TOKENS_REVOKED_STREAM, min=start, max="+")
        self._last_id = start
        self._apply(cast(Entries, entries))

    async def load(self) -> None:
        """The recent revocations, before the verifier serves. Unreachable Redis: logged, and
        `run` keeps trying; the verifier serves meanwhile with what it knows."""
        redis = redis_client(self._redis_url)
        try:
            await self._load(redis)
            log.info("revocations loaded", count=len(self._revocations))
        except (RedisError, OSError) as error:
            self._outage(error)
        finally:
            await redis.aclose()

    def _outage(self, error: BaseException) -> None:
        now = self._clock()
        if self._outage_since is None:
            self._outage_since = now
        if self._outage_since == now or now - self._outage_logged_at >= OUTAGE_LOG_EVERY_S:
            self._outage_logged_at = now
            log.error(
                "revocation feed cannot reach Redis: revocations made from now on are not "
                "enforced here until it is back; the ones already known still are",
                known=len(self._revocations),
                down_for_s=round(now - self._outage_since, 1),
                error=describe(error),
            )

    async def run(self) -> None:
        """Follows the stream until cancelled, reconnecting (from the last id seen) forever."""
        attempt = 0
        redis = redis_client(self._redis_url, blocking_read_s=self._block_ms / 1000)
        pruned_at = self._clock()
        try:
            while True:
                try:
                    if self._last_id is None:
                        await self._load(redis)
                    assert self._last_id is not None
                    answer = cast(
                        list[tuple[bytes, Entries]],
                        await redis.xread(
                            {streams.TOKENS_REVOKED_STREAM: self._last_id},
                            block=self._block_ms,
                            count=1000,
                        ),
                    )
                except (RedisError, OSError) as error:
                    self._outage(error)
                    await asyncio.sleep(backoff_delay(attempt, base_s=0.2, max_s=MAX_BACKOFF_S))
                    attempt += 1
                    continue
                if self._outage_since is not None:
                    log.warning(
                        "revocation feed reconnected",
                        down_for_s=round(self._clock() - self._outage_since, 1),
                    )
                    self._outage_since = None
                attempt = 0
                for _stream, entries in answer:
                    self._apply(entries)
                if self._clock() - pruned_at > 60:
                    self._revocations.prune()
                    pruned_at = self._clock()
        finally:
            await redis.aclose()
