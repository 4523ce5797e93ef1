"""The transactional outbox every publishing service shares: its table, the insert a use case makes
inside its own transaction, and the queries of the relay (libs/outbox_relay.py) and of republish
(libs/outbox_republish.py).

A service adopts it with one line in its store (`outbox = Outbox(metadata)`: a table `outbox` in the
service's schema, woken through the channel `<schema>_outbox`), one migration
(`libs.migrations.create_outbox_table`) and its relay as a background task of its server.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncSession

from libs.db import clock_now, row_columns

TABLE = "outbox"
UNPUBLISHED_INDEX = "ix_outbox_unpublished"


@dataclass(frozen=True)
class NewOutboxEvent:
    event_id: uuid.UUID
    # One event per fact (e.g. "course_completed:enrollment:42"): a bug cannot emit it twice.
    dedup_key: str
    stream: str
    event_type: str
    payload: bytes


@dataclass(frozen=True)
class OutboxRow:
    id: int
    event_id: uuid.UUID
    stream: str
    event_type: str
    payload: bytes


def outbox_table(metadata: sa.MetaData) -> sa.Table:
    """The outbox table on a service's metadata (so in its schema)."""
    table = sa.Table(
        TABLE,
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
        sa.Column("dedup_key", sa.String(200), nullable=False, unique=True),
        sa.Column("stream", sa.String(200), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
    )
    # The relay only ever looks for unpublished rows; keep that lookup tiny.
    sa.Index(UNPUBLISHED_INDEX, table.c.id, postgresql_where=table.c.published_at.is_(None))
    return table


class Outbox:
    """One service's outbox: the table and every statement run on it."""

    def __init__(self, metadata: sa.MetaData, *, scrub_published: bool = False) -> None:
        """`scrub_published`: empty a row's payload once it is published, for events that carry
        a secret (identity's reset codes); such rows cannot be republished, by design."""
        assert metadata.schema, "the outbox lives in the service's own schema"
        self.schema: str = metadata.schema
        self.scrub_published = scrub_published
        self.table = outbox_table(metadata)
        # Channel the relay LISTENs on; a committed insert NOTIFYs it.
        self.channel = f"{self.schema}_outbox"
        self._columns = row_columns(self.table, OutboxRow)

    async def insert(self, session: AsyncSession, events: Sequence[NewOutboxEvent]) -> None:
        """Write events in the caller's transaction and wake the relays when that transaction
        commits (PostgreSQL delivers NOTIFY at commit, and drops it on rollback). One statement:
        the NOTIFY rides in RETURNING (identical notifications of a transaction are folded)."""
        if not events:
            return
        statement = (
            sa.insert(self.table)
            .values([dataclasses.asdict(event) for event in events])
            .returning(sa.func.pg_notify(self.channel, ""))
        )
        await session.execute(statement)

    async def claim_unpublished(self, session: AsyncSession, limit: int) -> list[OutboxRow]:
        """Lock up to `limit` unpublished rows, oldest first. Rows another relay holds are
        skipped, so relays share the work and never publish the same row at the same time."""
        outbox = self.table.c
        statement = (
            sa.select(*self._columns)
            .where(outbox.published_at.is_(None))
            .order_by(outbox.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [OutboxRow(**row._mapping) for row in await session.execute(statement)]

    async def mark_published(self, session: AsyncSession, outbox_ids: Sequence[int]) -> None:
        if not outbox_ids:
            return
        outbox = self.table.c
        values: dict[str, object] = {
            "published_at": clock_now(),
            "attempts": outbox.attempts + 1,
            "last_error": None,
        }
        if self.scrub_published:
            values["payload"] = b""
        await session.execute(
            sa.update(self.table).where(outbox.id.in_(list(outbox_ids))).values(**values)
        )

    async def record_failure(self, session: AsyncSession, outbox_id: int, error: str) -> None:
        outbox = self.table.c
        await session.execute(
            sa.update(self.table)
            .where(outbox.id == outbox_id)
            .values(attempts=outbox.attempts + 1, last_error=error[:1000])
        )

    async def published_between(
        self,
        session: AsyncSession,
        since: datetime,
        until: datetime,
        *,
        after_id: int,
        limit: int,
    ) -> list[OutboxRow]:
        """Rows the relay already published, created in [since, until), after `after_id` (a
        keyset page, oldest first): what republish puts back on the streams."""
        outbox = self.table.c
        statement = (
            sa.select(*self._columns)
            .where(
                outbox.created_at >= since,
                outbox.created_at < until,
                outbox.published_at.is_not(None),
                outbox.id > after_id,
            )
            .order_by(outbox.id)
            .limit(limit)
        )
        return [OutboxRow(**row._mapping) for row in await session.execute(statement)]
