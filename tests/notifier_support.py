"""Test helpers for the notifier: a real SMTP server (aiosmtpd), events, stream entries, waiting."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from courseplatform.events.v1 import events_pb2
from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

from libs.embedded import free_port
from libs.proto_time import to_timestamp
from libs.settings import Settings
from libs.streams import COURSE_COMPLETED_TYPE, encode_entry
from services.notifier.app import NotifierApp


@dataclass
class ReceivedMail:
    mail_from: str
    recipients: list[str]
    message: EmailMessage

    @property
    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None
        return part.get_content()

    @property
    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        assert part is not None
        return part.get_content()


@dataclass
class MailCatcher:
    """An SMTP server on a loopback port, run by aiosmtpd in its own thread of this process.

    `refuse` maps a recipient to the SMTP reply its RCPT TO gets (e.g. "550 no such user");
    `data_delay_s` makes DATA slow, to observe a mail in flight; `hold_next` delays the reply to
    the next DATA or QUIT once. A mail counts as accepted when its 250 to DATA is about to go
    out: a client that disconnects while DATA is delayed cancels it (aiosmtpd cancels the
    handler on EOF), as a real server's reply it never read. `on_accept` runs right before.
    """

    port: int = field(default_factory=free_port)
    refuse: dict[str, str] = field(default_factory=dict)
    data_delay_s: float = 0.0
    mails: list[ReceivedMail] = field(default_factory=list)
    data_started: threading.Event = field(default_factory=threading.Event)
    data_count: int = 0  # transactions that reached DATA
    on_accept: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._controller: Controller | None = None
        self._holds: dict[str, tuple[float, threading.Event]] = {}

    def hold_next(self, command: str, seconds: float) -> threading.Event:
        """Delay the reply to the next `command` ("DATA" or "QUIT"); the event is set when the
        hold begins."""
        started = threading.Event()
        with self._lock:
            self._holds[command] = (seconds, started)
        return started

    async def _hold(self, command: str) -> None:
        with self._lock:
            hold = self._holds.pop(command, None)
        if hold is not None:
            seconds, started = hold
            started.set()
            await asyncio.sleep(seconds)

    def start(self) -> MailCatcher:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.data_count += 1
        self.data_started.set()
        if self.data_delay_s:
            await asyncio.sleep(self.data_delay_s)
        await self._hold("DATA")
        if self.on_accept is not None:
            self.on_accept()
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.mails.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        await self._hold("QUIT")
        return "221 Bye"

    def to(self, address: str) -> list[ReceivedMail]:
        with self._lock:
            return [mail for mail in self.mails if address in mail.recipients]


def completion_event(**overrides: Any) -> events_pb2.CourseCompleted:
    token = uuid.uuid4().hex[:8]
    values: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "enrollment_id": 7,
        "student_id": 42,
        "student_email": f"student-{token}@example.com",
        "student_full_name": f"Ada Lovelace {token}",
        "course_id": 3,
        "course_title": f"Analytical Engines {token}",
        "completed_at": to_timestamp(datetime(2026, 11, 27, 10, 15, tzinfo=UTC)),
        "occurred_at": to_timestamp(datetime(2026, 11, 27, 10, 15, 1, tzinfo=UTC)),
    }
    values.update(overrides)
    return events_pb2.CourseCompleted(**values)


def stream_entry(event: events_pb2.CourseCompleted) -> dict[FieldT, EncodableT]:
    """The entry the learning service's relay writes (libs/streams.encode_entry)."""
    return encode_entry(event.SerializeToString(), event.event_id, COURSE_COMPLETED_TYPE)


async def publish(redis: Redis, stream: str, event: events_pb2.CourseCompleted) -> str:
    entry_id = await redis.xadd(stream, stream_entry(event))
    return entry_id.decode()


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout_s: float = 20.0,
    what: str = "condition",
) -> None:
    """Poll until `check` holds; fails the test if it never does (a bound, not a timing claim)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def pending_ids(redis: Redis, stream: str, group: str) -> set[str]:
    entries = await redis.xpending_range(stream, group, min="-", max="+", count=10_000)
    return {entry["message_id"].decode() for entry in entries}


def _stream_id(entry_id: str) -> tuple[int, int]:
    millis, _, sequence = entry_id.partition("-")
    return int(millis), int(sequence or 0)


async def handled(redis: Redis, stream: str, group: str, entry_id: str) -> bool:
    """The group has delivered the entry and it is no longer pending: acked (or dead-lettered).

    "Not pending" alone also holds for an entry nobody has read yet.
    """
    groups = {info["name"].decode(): info for info in await redis.xinfo_groups(stream)}
    if group not in groups:
        return False
    last_delivered = groups[group]["last-delivered-id"].decode()
    if _stream_id(last_delivered) < _stream_id(entry_id):
        return False
    return entry_id not in await pending_ids(redis, stream, group)


async def times_delivered(redis: Redis, stream: str, group: str, entry_id: str) -> int:
    entries = await redis.xpending_range(stream, group, min=entry_id, max=entry_id, count=1)
    return int(entries[0]["times_delivered"]) if entries else 0


def fast_settings(base: Settings, catcher: MailCatcher | None = None, **overrides: Any) -> Settings:
    """Settings for a test notifier: short idle/backoff times, SMTP pointed at `catcher`."""
    values: dict[str, Any] = {
        "smtp_host": "127.0.0.1" if catcher is not None else None,
        "smtp_port": catcher.port if catcher is not None else 25,
        "smtp_timeout_s": 2.0,
        "notifier_reclaim_idle_ms": 300,
        # Longer than the idle time (a takeover then waits a few reclaim rounds), so that a
        # loaded test machine missing a renewal or two never lets a live sender's claim lapse.
        "notifier_lease_s": 1.0,
        "notifier_retry_backoff_s": 0.02,
        "notifier_retries_per_delivery": 1,
        "notifier_max_attempts": 5,
        "notifier_shutdown_grace_s": 10.0,
    }
    values.update(overrides)
    return base.model_copy(update=values)


@dataclass
class TestStream:
    """A stream of one test's own, so tests never read each other's entries."""

    name: str = field(default_factory=lambda: f"test.notifier.{uuid.uuid4().hex[:10]}")

    @property
    def dead_letters(self) -> str:
        return f"{self.name}.dlq"


TestStream.__test__ = False  # type: ignore[attr-defined]  # not a pytest test class


@asynccontextmanager
async def running_notifier(
    settings: Settings,
    stream: TestStream | None = None,
    consumer: str | None = None,
    supervise_interval_s: float = 0.2,
) -> AsyncIterator[NotifierApp]:
    """A notifier started in this process (no HTTP), stopped gracefully at the end."""
    kwargs: dict[str, Any] = {
        "consumer": consumer or f"test-{uuid.uuid4().hex[:8]}",
        "supervise_interval_s": supervise_interval_s,
    }
    if stream is not None:
        kwargs.update(stream=stream.name, dead_letter_stream=stream.dead_letters)
    notifier = NotifierApp(settings, **kwargs)
    await notifier.app.start()
    try:
        yield notifier
    finally:
        await notifier.app.stop()
