"""Tables of schema `identity` and the queries the service runs on them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from libs.db import row_columns, schema_metadata
from services.identity import SCHEMA
from services.identity.domain import User

metadata = schema_metadata(SCHEMA)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("full_name", sa.String(255), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.CheckConstraint("role IN ('Student', 'Instructor')", name="role"),
)
# Case-insensitive uniqueness is a constraint, so two racing registrations cannot both win.
sa.Index("uq_users_email_lower", sa.func.lower(users.c.email), unique=True)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("jti", sa.String(64), primary_key=True),
    sa.Column(
        "user_id",
        sa.BigInteger,
        sa.ForeignKey(users.c.id, ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    # Every token rotated from one login shares a family; reuse of a spent token revokes it all.
    sa.Column("family_id", sa.String(64), nullable=False, index=True),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    sa.Column("replaced_by", sa.String(64)),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
)


@dataclass(frozen=True)
class RefreshTokenRow:
    jti: str
    user_id: int
    family_id: str
    expires_at: datetime
    revoked_at: datetime | None
    replaced_by: str | None


_USER_COLUMNS = row_columns(users, User)
_REFRESH_TOKEN_COLUMNS = row_columns(refresh_tokens, RefreshTokenRow)


class EmailTaken(Exception):
    pass


def storable(text: str) -> bool:
    """PostgreSQL text cannot hold U+0000; a lookup by such a value can only find nothing
    (and would otherwise fail in the driver)."""
    return "\x00" not in text


async def insert_user(
    session: AsyncSession, *, email: str, full_name: str, role: str, password_hash: str
) -> User:
    statement = (
        insert(users)
        .values(email=email, full_name=full_name, role=role, password_hash=password_hash)
        .returning(*_USER_COLUMNS)
    )
    try:
        async with session.begin_nested():
            row = (await session.execute(statement)).one()
    except IntegrityError as exc:
        raise EmailTaken from exc
    return User(**row._mapping)


async def user_by_email(session: AsyncSession, normalized_email: str) -> User | None:
    if not storable(normalized_email):
        return None
    row = (
        await session.execute(
            sa.select(*_USER_COLUMNS).where(sa.func.lower(users.c.email) == normalized_email)
        )
    ).one_or_none()
    return User(**row._mapping) if row else None


async def user_by_id(session: AsyncSession, user_id: int) -> User | None:
    row = (
        await session.execute(sa.select(*_USER_COLUMNS).where(users.c.id == user_id))
    ).one_or_none()
    return User(**row._mapping) if row else None


async def email_exists(session: AsyncSession, normalized_email: str) -> bool:
    if not storable(normalized_email):
        return False
    statement = sa.select(sa.exists().where(sa.func.lower(users.c.email) == normalized_email))
    return bool(await session.scalar(statement))


async def update_password_hash(session: AsyncSession, user_id: int, password_hash: str) -> None:
    await session.execute(
        sa.update(users).where(users.c.id == user_id).values(password_hash=password_hash)
    )


async def insert_refresh_token(
    session: AsyncSession, *, jti: str, user_id: int, family_id: str, expires_at: datetime
) -> None:
    await session.execute(
        sa.insert(refresh_tokens).values(
            jti=jti, user_id=user_id, family_id=family_id, expires_at=expires_at
        )
    )


async def lock_refresh_token(session: AsyncSession, jti: str) -> RefreshTokenRow | None:
    """The token's row, locked so two concurrent refreshes of one token cannot both rotate it."""
    statement = (
        sa.select(*_REFRESH_TOKEN_COLUMNS).where(refresh_tokens.c.jti == jti).with_for_update()
    )
    row = (await session.execute(statement)).one_or_none()
    return RefreshTokenRow(**row._mapping) if row else None


async def mark_rotated(session: AsyncSession, jti: str, replaced_by: str) -> None:
    await session.execute(
        sa.update(refresh_tokens)
        .where(refresh_tokens.c.jti == jti)
        .values(revoked_at=sa.func.now(), replaced_by=replaced_by)
    )


async def revoke_family(session: AsyncSession, family_id: str) -> None:
    await session.execute(
        sa.update(refresh_tokens)
        .where(refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=sa.func.now())
    )
