"""Schema `notifier`: one row per event id, the record that makes sending idempotent.

A row moves `sending` (claimed by one consumer under a lease) -> `sent` (mail accepted; final), or
-> `failed` (dead-lettered; a replay of the event may claim it again with a fresh attempt budget).
A claim is one atomic INSERT .. ON CONFLICT, so two consumers holding copies of the same event
(a redelivery, a republished duplicate) can never both be sending it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from libs.db import schema_metadata
from services.notifier import SCHEMA

SENDING = "sending"
SENT = "sent"
FAILED = "failed"
MAX_ERROR_LENGTH = 2000

metadata = schema_metadata(SCHEMA)

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("event_id", sa.String(128), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("recipient", sa.String(320), nullable=False),
    sa.Column("message_id", sa.String(255), nullable=False),
    # Deliveries that reached the send step: the attempt budget is counted here, not in the
    # stream, so a redelivery that stopped earlier (database down, shutdown) costs nothing.
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("claimed_by", sa.String(255)),
    sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
    sa.Column("last_error", sa.Text),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    sa.CheckConstraint(f"status IN ('{SENDING}', '{SENT}', '{FAILED}')", name="status"),
)


class ClaimOutcome(enum.Enum):
    CLAIMED = "claimed"  # this consumer may send now
    ALREADY_SENT = "already_sent"  # nothing to do but ack
    BUSY = "busy"  # another consumer holds a live lease on it


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    attempts: int = 0


async def claim(
    session: AsyncSession,
    *,
    event_id: str,
    recipient: str,
    message_id: str,
    consumer: str,
    lease: timedelta,
) -> Claim:
    """Take the right to send `event_id`, unless it was sent or is being sent under a live lease."""
    now = sa.func.now()
    statement = insert(notifications).values(
        event_id=event_id,
        status=SENDING,
        recipient=recipient,
        message_id=message_id,
        attempts=1,
        claimed_by=consumer,
        lease_expires_at=now + lease,
    )
    table = notifications.c
    claim = statement.on_conflict_do_update(
        index_elements=[table.event_id],
        set_={
            "status": SENDING,
            "recipient": statement.excluded.recipient,
            "message_id": statement.excluded.message_id,
            # A replayed dead letter starts a fresh attempt budget.
            "attempts": sa.case((table.status == FAILED, 1), else_=table.attempts + 1),
            "claimed_by": statement.excluded.claimed_by,
            "lease_expires_at": statement.excluded.lease_expires_at,
            "updated_at": now,
        },
        where=sa.or_(
            table.status == FAILED,
            sa.and_(table.status == SENDING, table.lease_expires_at <= now),
        ),
    ).returning(table.attempts)
    attempts = (await session.execute(claim)).scalar_one_or_none()
    if attempts is not None:
        return Claim(ClaimOutcome.CLAIMED, attempts)
    status = await session.scalar(sa.select(table.status).where(table.event_id == event_id))
    return Claim(ClaimOutcome.ALREADY_SENT if status == SENT else ClaimOutcome.BUSY)


async def mark_sent(session: AsyncSession, event_id: str) -> None:
    await session.execute(
        sa.update(notifications)
        .where(notifications.c.event_id == event_id)
        .values(
            status=SENT,
            sent_at=sa.func.now(),
            updated_at=sa.func.now(),
            lease_expires_at=None,
            last_error=None,
        )
    )


async def renew(session: AsyncSession, event_id: str, consumer: str, lease: timedelta) -> bool:
    """Extend this consumer's live claim; False when it no longer holds one."""
    result = await session.execute(
        sa.update(notifications)
        .where(
            notifications.c.event_id == event_id,
            notifications.c.status == SENDING,
            notifications.c.claimed_by == consumer,
        )
        .values(lease_expires_at=sa.func.now() + lease, updated_at=sa.func.now())
    )
    return bool(cast("CursorResult[Any]", result).rowcount)


async def release(session: AsyncSession, event_id: str, consumer: str, error: str) -> None:
    """Give the claim back after a failed attempt, so the next delivery need not wait the lease."""
    await session.execute(
        sa.update(notifications)
        .where(
            notifications.c.event_id == event_id,
            notifications.c.status == SENDING,
            notifications.c.claimed_by == consumer,
        )
        .values(
            lease_expires_at=sa.func.now(),
            last_error=error[:MAX_ERROR_LENGTH],
            updated_at=sa.func.now(),
        )
    )


async def mark_failed(session: AsyncSession, event_id: str, error: str) -> None:
    await session.execute(
        sa.update(notifications)
        .where(notifications.c.event_id == event_id, notifications.c.status == SENDING)
        .values(
            status=FAILED,
            lease_expires_at=None,
            last_error=error[:MAX_ERROR_LENGTH],
            updated_at=sa.func.now(),
        )
    )


async def status_of(session: AsyncSession, event_id: str) -> str | None:
    return await session.scalar(
        sa.select(notifications.c.status).where(notifications.c.event_id == event_id)
    )
