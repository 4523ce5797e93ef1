"""The use case: one stream entry in, at most one email out, and a verdict on the entry.

Order of work for an entry: decode -> compose -> claim the event in PostgreSQL -> send (quick
retries with backoff) -> record `sent` the moment SMTP accepted (before QUIT) -> the caller acks.
From the claim until `sent` is recorded a heartbeat renews the claim's lease and the entry's idle
time (services/notifier/lease.py), so only a dead consumer's event is taken over. Whatever cannot succeed is dead-lettered
with the reason (and acked in the same MULTI); whatever may succeed later is left pending, to be
reclaimed after the idle time. See docs/notifier.md for the guarantees and the remaining window.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from redis.asyncio import Redis
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs.backoff import backoff_delay
from libs.db import transaction
from libs.logging import get_logger
from libs.streams import decode_entry
from services.notifier import store
from services.notifier.deadletter import dead_letter, delivery_count
from services.notifier.events import MalformedEvent
from services.notifier.kinds import COURSE_COMPLETED, MailKind, StaleEvent
from services.notifier.lease import Heartbeat
from services.notifier.mailer import Mailer, OutgoingMail, PermanentMailError, TransientMailError

log = get_logger("notifier")
T = TypeVar("T")

# Waits between tries to record `sent` grow from the first to the last, within the time budget.
RECORD_SENT_FIRST_WAIT_S = 0.2
RECORD_SENT_MAX_WAIT_S = 2.0


class Outcome(enum.Enum):
    SENT = "sent"  # mail accepted and recorded: ack
    DUPLICATE = "duplicate"  # this event was already mailed: ack, nothing sent
    DEAD_LETTERED = "dead_lettered"  # moved to the dead-letter stream, already acked
    RETRY_LATER = "retry_later"  # leave pending: a later delivery tries again
    SKIPPED = "skipped"  # too late to be of use (an expired reset code): ack, nothing sent


@dataclass(frozen=True)
class Delivery:
    entry_id: str
    fields: Mapping[bytes, bytes]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int  # deliveries that try to send before the event is dead-lettered
    retries_per_delivery: int
    backoff_s: float

    def delay(self, retry: int) -> float:
        return backoff_delay(retry, base_s=self.backoff_s, jitter=0.2)


@dataclass(frozen=True)
class StreamBinding:
    stream: str
    dead_letter_stream: str
    group: str
    consumer: str
    dead_letter_maxlen: int


class Notifier:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        redis: Redis,
        mailer: Mailer,
        sender: str,
        binding: StreamBinding,
        policy: RetryPolicy,
        lease_s: float,
        record_sent_budget_s: float,
        kind: MailKind = COURSE_COMPLETED,
    ) -> None:
        self._kind = kind
        self._sessions = sessions
        self._redis = redis
        self._mailer = mailer
        self._sender = sender
        self._binding = binding
        self._policy = policy
        self._lease = timedelta(seconds=lease_s)
        self._record_sent_budget_s = record_sent_budget_s
        self._heartbeat = Heartbeat(
            sessions=sessions,
            redis=redis,
            stream=binding.stream,
            group=binding.group,
            consumer=binding.consumer,
            lease=self._lease,
        )
        # Event ids whose mail SMTP accepted but whose `sent` record could not be written: this
        # process never sends them again, it only retries the record. Bounded in practice by
        # what can be claimed while the database fails (a claim needs it too).
        self._accepted_unrecorded: set[str] = set()
        self._stopping = asyncio.Event()

    @property
    def kind(self) -> MailKind:
        return self._kind

    def stop_retrying(self) -> None:
        """Shutdown: the mail in flight finishes, but no new backoff wait starts."""
        self._stopping.set()

    async def handle(self, delivery: Delivery) -> Outcome:
        event_id = decode_entry(delivery.fields).event_id
        logger = log.bind(entry_id=delivery.entry_id, event_id=event_id)
        try:
            composed = self._kind.compose(delivery.fields, self._sender, datetime.now(UTC))
        except (MalformedEvent, ValueError) as exc:
            # Never retried: no delivery can make this entry decode.
            logger.warning(f"malformed {self._kind.name} entry", reason=str(exc))
            await self._dead_letter(delivery, f"malformed: {exc}")
            return Outcome.DEAD_LETTERED
        except StaleEvent as exc:
            logger.info(f"{self._kind.name} entry not mailed", reason=str(exc))
            return Outcome.SKIPPED
        mail: OutgoingMail = composed.mail
        message = mail.message
        event_key = composed.event_id
        if event_key in self._accepted_unrecorded:
            logger.info("mail already accepted by SMTP from this process; recording it")
            async with self._heartbeat.holding(event_key, delivery.entry_id):
                await self._record_sent(event_key)
            return Outcome.DUPLICATE
        claim = await self._in_transaction(
            lambda session: store.claim(
                session,
                event_id=event_key,
                recipient=mail.recipient,
                message_id=str(message["Message-ID"]),
                consumer=self._binding.consumer,
                lease=self._lease,
            )
        )
        if claim.outcome is store.ClaimOutcome.ALREADY_SENT:
            logger.info("event already mailed; acknowledging the duplicate")
            return Outcome.DUPLICATE
        if claim.outcome is store.ClaimOutcome.BUSY:
            logger.info("event is being mailed by another consumer; leaving it pending")
            return Outcome.RETRY_LATER
        if claim.attempts > self._policy.max_attempts:
            # Earlier deliveries claimed it and never reported back (crashed or hung mid-send).
            return await self._give_up(
                delivery, event_key, f"gave up after {claim.attempts - 1} attempts"
            )

        try:
            async with self._heartbeat.holding(event_key, delivery.entry_id):
                await self._send_with_retries(mail)
        except PermanentMailError as exc:
            logger.warning("mail refused permanently", error=str(exc))
            return await self._give_up(delivery, event_key, f"refused: {exc}")
        except TransientMailError as exc:
            if claim.attempts >= self._policy.max_attempts:
                return await self._give_up(
                    delivery,
                    event_key,
                    f"gave up after {claim.attempts} attempts: {exc}",
                )
            error = str(exc)
            await self._in_transaction(
                lambda session: store.release(session, event_key, self._binding.consumer, error)
            )
            logger.warning(
                "mail not accepted; leaving the entry pending for a later delivery",
                error=str(exc),
                attempt=claim.attempts,
                max_attempts=self._policy.max_attempts,
            )
            return Outcome.RETRY_LATER

        logger.info(
            f"{self._kind.name} mail sent",
            **composed.log_fields,
            transport=self._mailer.description,
        )
        return Outcome.SENT

    async def _send_with_retries(self, mail: OutgoingMail) -> None:
        async def accepted() -> None:
            # Remembered first: even if the record cannot be written, this process never
            # sends the mail again.
            self._accepted_unrecorded.add(mail.key)
            await self._record_sent(mail.key)

        for retry in range(self._policy.retries_per_delivery + 1):
            try:
                await self._mailer.send(mail, accepted)
                return
            except TransientMailError as exc:
                last_try = retry == self._policy.retries_per_delivery
                if last_try or self._stopping.is_set():
                    raise
                delay = self._policy.delay(retry)
                log.info(
                    "mail not accepted; retrying",
                    event_id=mail.key,
                    error=str(exc),
                    retry_in_s=round(delay, 2),
                )
                if await self._stopped_within(delay):
                    raise

    async def _stopped_within(self, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        except TimeoutError:
            return False
        return True

    async def _record_sent(self, event_id: str) -> None:
        # The mail is out: failing to record it would let another consumer send it again once
        # the lease runs out, so a database outage is waited out here (the heartbeat keeps the
        # entry this consumer's meanwhile) for up to the budget, then surfaced: the entry stays
        # pending, and this process only retries the record when it sees the entry again.
        deadline = time.monotonic() + self._record_sent_budget_s
        attempt = 0
        while True:
            try:
                await self._in_transaction(lambda session: store.mark_sent(session, event_id))
            except (SQLAlchemyError, OSError) as exc:
                wait = backoff_delay(
                    attempt, base_s=RECORD_SENT_FIRST_WAIT_S, max_s=RECORD_SENT_MAX_WAIT_S
                )
                if time.monotonic() + wait > deadline:
                    log.error(
                        "could not record a mail SMTP accepted; the entry stays pending",
                        event_id=event_id,
                        error=repr(exc),
                    )
                    raise
                log.warning("recording a sent mail failed; retrying", event_id=event_id)
                await asyncio.sleep(wait)
                attempt += 1
                continue
            self._accepted_unrecorded.discard(event_id)
            return

    async def _give_up(self, delivery: Delivery, event_id: str, reason: str) -> Outcome:
        await self._in_transaction(lambda session: store.mark_failed(session, event_id, reason))
        await self._dead_letter(delivery, reason)
        return Outcome.DEAD_LETTERED

    async def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        binding = self._binding
        deliveries = await delivery_count(
            self._redis, binding.stream, binding.group, delivery.entry_id
        )
        letter_id = await dead_letter(
            self._redis,
            source_stream=binding.stream,
            dead_letter_stream=binding.dead_letter_stream,
            group=binding.group,
            entry_id=delivery.entry_id,
            fields=delivery.fields,
            reason=reason,
            deliveries=deliveries,
            consumer=binding.consumer,
            maxlen=binding.dead_letter_maxlen,
        )
        log.error(
            "entry moved to the dead-letter stream",
            entry_id=delivery.entry_id,
            event_id=decode_entry(delivery.fields).event_id,
            dead_letter_stream=binding.dead_letter_stream,
            dead_letter_id=letter_id,
            reason=reason,
        )

    async def _in_transaction(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        async with transaction(self._sessions) as session:
            return await work(session)
