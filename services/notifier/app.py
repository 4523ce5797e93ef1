"""FastStream wiring: the stream subscribers, health and AsyncAPI routes, and the lifecycle.

Two subscribers share one handler, one consumer name and the consumer group:
- the reader takes new entries (XREADGROUP `>`);
- the reclaimer takes entries left pending longer than `notifier_reclaim_idle_ms` by any
  consumer of the group, a dead one or this one after a failed attempt (XAUTOCLAIM).
Acks are manual: an entry is acked only once its mail was accepted (or it was dead-lettered).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from faststream import AckPolicy
from faststream.asgi import AsgiFastStream, AsgiResponse, AsyncAPIRoute, get
from faststream.asgi.response import JSONResponse
from faststream.asgi.types import Scope
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.annotations import RedisStreamMessage
from faststream.redis.message import DefaultStreamMessage
from faststream.specification import AsyncAPI
from pydantic import BaseModel, Field
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.db import create_engine, session_factory
from libs.logging import get_logger
from libs.redis_client import redis_client, redis_timeouts
from libs.settings import Settings
from libs.streams import (
    COURSE_COMPLETED_DLQ,
    COURSE_COMPLETED_STREAM,
    COURSE_COMPLETED_TYPE,
    FIELD_EVENT,
    FIELD_EVENT_ID,
    FIELD_TYPE,
    NOTIFIER_GROUP,
    PASSWORD_RESET_DLQ,
    PASSWORD_RESET_STREAM,
    PASSWORD_RESET_TYPE,
    decode_entry,
)
from services.notifier import lease
from services.notifier.consumer_group import ensure_group, forget_stale_consumers
from services.notifier.kinds import COURSE_COMPLETED, MailKind
from services.notifier.mailer import mailer_from_settings
from services.notifier.password_reset import password_reset_kind
from services.notifier.usecases import Delivery, Notifier, Outcome, RetryPolicy, StreamBinding

log = get_logger("notifier")

VERSION = "1.0.0"
# XREADGROUP blocks this long per poll; shutdown does not wait for it.
READ_BLOCK_MS = 1000
# Entries are read one at a time: an entry read but not yet handled sits in this consumer's
# pending list, where after the idle time other consumers would reclaim it under our feet.
READ_COUNT = 1
HEALTH_TIMEOUT_S = 2.0
# How often the supervisor checks that both subscribers still run.
SUPERVISE_INTERVAL_S = 5.0


class CourseCompletedEntry(BaseModel):
    """One entry of the course-completed stream (Redis stream fields, not JSON)."""

    event: bytes = Field(
        b"",
        description=(
            f"Binary protobuf `{COURSE_COMPLETED_TYPE}` "
            "(protos/courseplatform/events/v1/events.proto): event_id, enrollment_id, "
            "student_id, student_email, student_full_name, course_id, course_title, "
            "completed_at, occurred_at."
        ),
    )
    event_id: str = Field("", description="The event's id in clear text; equals event.event_id.")
    type: str = Field("", description=f"Always `{COURSE_COMPLETED_TYPE}`.")


class PasswordResetEntry(BaseModel):
    """One entry of the password-reset stream (Redis stream fields, not JSON)."""

    event: bytes = Field(
        b"",
        description=(
            f"Binary protobuf `{PASSWORD_RESET_TYPE}` "
            "(protos/courseplatform/events/v1/events.proto): event_id, user_id, email, "
            "full_name, code (a live secret until expires_at), expires_at, requested_at."
        ),
    )
    event_id: str = Field("", description="The event's id in clear text; equals event.event_id.")
    type: str = Field("", description=f"Always `{PASSWORD_RESET_TYPE}`.")


class DeadLetterEntry(CourseCompletedEntry):
    """An entry the notifier gave up on: the original fields byte for byte, plus why."""

    dlq_reason: str = Field(description="Why it was dead-lettered (malformed, refused, gave up).")
    dlq_source_stream: str = Field(description="The stream the entry came from.")
    dlq_source_id: str = Field(description="Its entry id there.")
    dlq_deliveries: str = Field(description="How often the group had delivered it.")
    dlq_consumer: str = Field(description="The consumer that dead-lettered it.")
    dlq_failed_at: str = Field(description="When, ISO 8601 UTC.")


def default_consumer_name() -> str:
    """Unique per process, stable for its lifetime: `<hostname>-<pid>`."""
    return f"{socket.gethostname()}-{os.getpid()}"


async def parse_entry(
    raw: DefaultStreamMessage,
    default_parser: Callable[[Any], Awaitable[Any]],
) -> Any:
    # FastStream's parser JSON-encodes any entry lacking its own `__data__` envelope, which fails
    # on binary protobuf values. It still builds the message object (which knows how to XACK), so
    # it is handed an empty entry and the real one is put back.
    message = await default_parser({**raw, "data": {}})
    message.raw_message = raw
    entry = decode_entry(raw["data"])
    message.body = entry.event or b""
    if raw["message_ids"]:
        message.message_id = raw["message_ids"][0].decode()
    if entry.event_id:
        message.correlation_id = entry.event_id
    return message


async def decode_fields(message: Any) -> dict[str, Any]:
    entry = decode_entry(message.raw_message["data"])
    return {
        FIELD_EVENT: entry.event or b"",
        FIELD_EVENT_ID: entry.event_id or "",
        FIELD_TYPE: entry.type or "",
    }


class NotifierApp:
    """One notifier process: a RedisBroker with its subscribers inside an ASGI app (health)."""

    def __init__(
        self,
        settings: Settings,
        *,
        stream: str = COURSE_COMPLETED_STREAM,
        dead_letter_stream: str = COURSE_COMPLETED_DLQ,
        group: str = NOTIFIER_GROUP,
        consumer: str | None = None,
        supervise_interval_s: float = SUPERVISE_INTERVAL_S,
        password_reset_stream: str | None = PASSWORD_RESET_STREAM,
        password_reset_dead_letter_stream: str = PASSWORD_RESET_DLQ,
    ) -> None:
        self.settings = settings
        self.supervise_interval_s = supervise_interval_s
        self._supervisor: asyncio.Task[None] | None = None
        self.consumer = consumer or settings.notifier_consumer or default_consumer_name()
        self.binding = StreamBinding(
            stream=stream,
            dead_letter_stream=dead_letter_stream,
            group=group,
            consumer=self.consumer,
            dead_letter_maxlen=settings.stream_maxlen,
        )
        self.mailer = mailer_from_settings(settings)
        self.notifier: Notifier | None = None
        # Password-reset mails: the same machinery on identity's stream (None: not consumed).
        self.reset_binding = (
            StreamBinding(
                stream=password_reset_stream,
                dead_letter_stream=password_reset_dead_letter_stream,
                group=group,
                consumer=self.consumer,
                dead_letter_maxlen=settings.stream_maxlen,
            )
            if password_reset_stream
            else None
        )
        self.reset_notifier: Notifier | None = None
        self._redis: Redis | None = None
        self._engine: AsyncEngine | None = None

        # FastStream's own lines go through the stdlib root logger, which libs.logging renders.
        faststream_logger = logging.getLogger("notifier.faststream")
        self.broker = RedisBroker(
            settings.redis_url,
            graceful_timeout=settings.notifier_shutdown_grace_s,
            **redis_timeouts(blocking_read_s=READ_BLOCK_MS / 1000),
            logger=faststream_logger,
            log_level=logging.DEBUG,  # one line per message; the processor logs outcomes
        )
        self.reader, self.reclaimer = self._register_subscribers(
            self.binding,
            CourseCompletedEntry,
            "Course completions; one email per event id.",
            lambda: self.notifier,
        )
        self.subscribers = [self.reader, self.reclaimer]
        if self.reset_binding is not None:
            self.subscribers += self._register_subscribers(
                self.reset_binding,
                PasswordResetEntry,
                "Password reset requests (identity); one email per event id, none once the "
                "code expired.",
                lambda: self.reset_notifier,
            )
        # Documents the dead-letter stream in AsyncAPI; deadletter.py writes it (atomically with
        # the XACK, in the source stream's raw encoding, which a FastStream publisher cannot do).
        self.broker.publisher(
            stream=dead_letter_stream,
            title=dead_letter_stream,
            description="Entries the notifier gave up on. Replay: python -m services.notifier "
            "replay-dead-letters",
            schema=DeadLetterEntry,
        )
        if self.reset_binding is not None:
            self.broker.publisher(
                stream=self.reset_binding.dead_letter_stream,
                title=self.reset_binding.dead_letter_stream,
                description="Password-reset entries the notifier gave up on (they hold a reset "
                "code, useless once expired).",
                schema=DeadLetterEntry,
            )
        self.specification = AsyncAPI(
            self.broker,
            title="courseplatform notifier",
            version=VERSION,
            description=(
                "Emails each student who completes a course, once (at least once in a small "
                "window, with the same Message-ID: see docs/notifier.md). Reads the "
                f"course-completed stream with consumer group `{group}`; entries are Redis "
                f"stream fields `{FIELD_EVENT}` (binary protobuf), `{FIELD_EVENT_ID}`, "
                f"`{FIELD_TYPE}`, not JSON."
            ),
        )
        self.app = AsgiFastStream(
            self.broker,
            asgi_routes=[("/health", self._health_route()), ("/livez", _alive)],
            asyncapi_path=AsyncAPIRoute("/docs/asyncapi", try_it_out_path=None),
            specification=self.specification,
            logger=faststream_logger,
            on_startup=[self._open],
            after_startup=[self._start_supervisor],
            on_shutdown=[self._stop_supervisor_and_retries],
            after_shutdown=[self._close],
        )

    def _register_subscribers(
        self,
        binding: StreamBinding,
        schema: type[BaseModel],
        description: str,
        notifier: Callable[[], Notifier | None],
    ) -> list[Any]:
        """The reader and the reclaimer of one stream, both handing entries to `notifier()`."""
        settings = self.settings
        common: dict[str, Any] = {
            "ack_policy": AckPolicy.MANUAL,
            "parser": parse_entry,
            "decoder": decode_fields,
        }
        reader = self.broker.subscriber(
            stream=StreamSub(
                binding.stream,
                group=binding.group,
                consumer=self.consumer,
                polling_interval=READ_BLOCK_MS,
                max_records=READ_COUNT,
            ),
            title=binding.stream,
            description=(
                f"{description} An entry is acknowledged only after the mail was accepted, or "
                f"after it was moved to `{binding.dead_letter_stream}`."
            ),
            **common,
        )
        reclaim_poll_ms = lease.reclaim_poll_ms(settings.notifier_reclaim_idle_ms)
        reclaimer = self.broker.subscriber(
            stream=StreamSub(
                binding.stream,
                group=binding.group,
                consumer=self.consumer,
                min_idle_time=settings.notifier_reclaim_idle_ms,
                polling_interval=reclaim_poll_ms,
            ),
            include_in_schema=False,  # the same channel as the reader, seen through XAUTOCLAIM
            **common,
        )

        async def on_entry(message: RedisStreamMessage) -> None:
            handler = notifier()
            assert handler is not None, "subscribers start after _open"
            delivery = Delivery(entry_id=message.message_id, fields=message.raw_message["data"])
            outcome = await handler.handle(delivery)
            if outcome in (Outcome.SENT, Outcome.DUPLICATE, Outcome.SKIPPED):
                await message.ack()
            elif outcome is Outcome.RETRY_LATER:
                # No XACK: the entry stays pending and the reclaimer redelivers it.
                await message.nack()
                return
            # DEAD_LETTERED: acked in the same MULTI that wrote the dead letter.
            if handler.kind.delete_when_done:
                await self._forget_entry(binding.stream, delivery.entry_id)

        # `entry` gives AsyncAPI the payload schema; the handler works on the raw fields, byte
        # for byte (a dead letter must keep them exactly).
        if schema is CourseCompletedEntry:

            async def on_course_completed(
                entry: CourseCompletedEntry, message: RedisStreamMessage
            ) -> None:
                await on_entry(message)

            reader(reclaimer(on_course_completed))
        else:

            async def on_password_reset(
                entry: PasswordResetEntry, message: RedisStreamMessage
            ) -> None:
                await on_entry(message)

            reader(reclaimer(on_password_reset))
        return [reader, reclaimer]

    async def _forget_entry(self, stream: str, entry_id: str) -> None:
        """Delete a handled entry that holds a secret, so the stream keeps no live code."""
        assert self._redis is not None
        try:
            await self._redis.xdel(stream, entry_id)
        except RedisError as error:  # the code still expires; the entry just lingers
            log.warning("could not delete a handled entry", stream=stream, error=repr(error))

    @property
    def subscribers_running(self) -> bool:
        return all(subscriber.running for subscriber in self.subscribers)

    async def _open(self) -> None:
        settings = self.settings
        self._engine = create_engine(settings, "notifier")
        self._redis = redis_client(settings.redis_url)
        bindings = [self.binding, *([self.reset_binding] if self.reset_binding else [])]
        for binding in bindings:
            if await ensure_group(self._redis, binding.stream, binding.group):
                log.info("created consumer group", stream=binding.stream, group=binding.group)
            forgotten = await forget_stale_consumers(
                self._redis, binding.stream, binding.group, keep=self.consumer
            )
            if forgotten:
                log.info("forgot consumers of finished processes", consumers=forgotten)
        self.notifier = self._notifier(self.binding, COURSE_COMPLETED)
        if self.reset_binding is not None:
            self.reset_notifier = self._notifier(
                self.reset_binding, password_reset_kind(settings.public_base_url)
            )
        binding = self.binding
        if settings.notifier_lease_s * 1000 > settings.notifier_reclaim_idle_ms:
            log.warning(
                "NOTIFIER_LEASE_S exceeds NOTIFIER_RECLAIM_IDLE_MS: a dead consumer's mail "
                "waits several reclaim rounds (see docs/notifier.md)",
                lease_s=settings.notifier_lease_s,
                reclaim_idle_ms=settings.notifier_reclaim_idle_ms,
            )
        log.info(
            "notifier starting",
            stream=binding.stream,
            password_reset_stream=self.reset_binding.stream if self.reset_binding else None,
            group=binding.group,
            consumer=self.consumer,
            transport=self.mailer.description,
            reclaim_idle_ms=settings.notifier_reclaim_idle_ms,
            lease_s=settings.notifier_lease_s,
            takeover_bound_s=lease.takeover_bound_s(
                settings.notifier_reclaim_idle_ms, settings.notifier_lease_s
            ),
        )

    def _notifier(self, binding: StreamBinding, kind: MailKind) -> Notifier:
        settings = self.settings
        assert self._engine is not None and self._redis is not None
        return Notifier(
            sessions=session_factory(self._engine),
            redis=self._redis,
            mailer=self.mailer,
            sender=settings.mail_from,
            binding=binding,
            policy=RetryPolicy(
                max_attempts=settings.notifier_max_attempts,
                retries_per_delivery=settings.notifier_retries_per_delivery,
                backoff_s=settings.notifier_retry_backoff_s,
            ),
            lease_s=settings.notifier_lease_s,
            record_sent_budget_s=settings.notifier_record_sent_retry_s,
            kind=kind,
        )

    async def _start_supervisor(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name="notifier-supervisor")

    async def _supervise(self) -> None:
        """Keep consuming, whatever happens to the stream.

        Connection errors FastStream rides out by itself; but when the consumer group vanishes
        (the stream was deleted, Redis restarted empty) it stops the subscriber for good. The
        group is then recreated and the subscriber started again.
        """
        bindings = [self.binding, *([self.reset_binding] if self.reset_binding else [])]
        pairs = [
            (subscriber, bindings[index // 2]) for index, subscriber in enumerate(self.subscribers)
        ]
        while True:
            await asyncio.sleep(self.supervise_interval_s)
            for subscriber, binding in pairs:
                if subscriber.running:
                    continue
                log.warning("a stream subscriber stopped; restarting it", stream=binding.stream)
                try:
                    assert self._redis is not None
                    await ensure_group(self._redis, binding.stream, binding.group)
                    await subscriber.start()
                except Exception as exc:
                    log.error("restarting the subscriber failed; will retry", error=repr(exc))

    async def _stop_supervisor_and_retries(self) -> None:
        # Before the broker stops its subscribers, so the supervisor does not restart them.
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        for notifier in (self.notifier, self.reset_notifier):
            if notifier is not None:
                notifier.stop_retrying()

    async def _close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
        if self._engine is not None:
            await self._engine.dispose()
        log.info("notifier stopped", consumer=self.consumer)

    async def _database_answers(self) -> bool:
        if self._engine is None:
            return False
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_S), self._engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    def _health_route(self) -> Any:
        @get(include_in_schema=False)
        async def health(scope: Scope) -> AsgiResponse:
            checks = {
                "redis": await self.broker.ping(HEALTH_TIMEOUT_S),
                "postgres": await self._database_answers(),
                "subscribers": self.subscribers_running,
            }
            healthy = all(checks.values())
            body = {"status": "ok" if healthy else "unavailable", "consumer": self.consumer}
            return JSONResponse({**body, "checks": checks}, 200 if healthy else 503)

        return health


@get(include_in_schema=False)
async def _alive(scope: Scope) -> AsgiResponse:
    return AsgiResponse(b"", 204)
