"""Tables of schema `identity` and the queries the service runs on them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from libs.db import clock_now, row_columns, schema_metadata
from libs.outbox import Outbox
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
    sa.Column("last_login", sa.DateTime(timezone=True)),
    sa.CheckConstraint("role IN ('Student', 'Instructor', 'Admin')", name="role"),
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


# Reset codes: only a SHA-256 of the code is kept (the code has 192 random bits, so a fast hash
# is enough: there is nothing to brute-force); used_at makes each code single-use.
password_resets = sa.Table(
    "password_resets",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column(
        "user_id", sa.BigInteger, sa.ForeignKey(users.c.id, ondelete="CASCADE"), nullable=False
    ),
    sa.Column("code_hash", sa.String(64), nullable=False, unique=True),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("used_at", sa.DateTime(timezone=True)),
)
# "How many mails did this user get in the last hour" is one index range.
sa.Index(
    "ix_password_resets_user_id_created_at",
    password_resets.c.user_id,
    password_resets.c.created_at,
)

# PasswordResetRequested events, relayed to their stream (libs/outbox.py, libs/outbox_relay.py).
# They carry a live reset code: the payload is emptied the moment the row is published.
outbox = Outbox(metadata, scrub_published=True)


@dataclass(frozen=True)
class PasswordResetRow:
    id: int
    user_id: int
    expires_at: datetime
    used_at: datetime | None


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
_PASSWORD_RESET_COLUMNS = row_columns(password_resets, PasswordResetRow)


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


async def user_by_id(session: AsyncSession, user_id: int, *, lock: bool = False) -> User | None:
    """`lock`: FOR SHARE, so a deactivation committing meanwhile is waited for and seen."""
    statement = sa.select(*_USER_COLUMNS).where(users.c.id == user_id)
    if lock:
        statement = statement.with_for_update(read=True)
    row = (await session.execute(statement)).one_or_none()
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


async def revoke_user_refresh_tokens(session: AsyncSession, user_id: int) -> None:
    """Every live refresh token of the user, every family: the sessions of all their devices."""
    await session.execute(
        sa.update(refresh_tokens)
        .where(refresh_tokens.c.user_id == user_id, refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=sa.func.now())
    )


async def record_login(session: AsyncSession, user_id: int) -> bool:
    """Stamps `last_login` of an active user (locking the row); False when not active (any more)."""
    statement = (
        sa.update(users)
        .where(users.c.id == user_id, users.c.is_active)
        .values(last_login=sa.func.now())
        .returning(users.c.id)
    )
    return (await session.execute(statement)).one_or_none() is not None


async def refresh_token_by_jti(session: AsyncSession, jti: str) -> RefreshTokenRow | None:
    if not storable(jti):
        return None
    statement = sa.select(*_REFRESH_TOKEN_COLUMNS).where(refresh_tokens.c.jti == jti)
    row = (await session.execute(statement)).one_or_none()
    return RefreshTokenRow(**row._mapping) if row else None


async def set_active(session: AsyncSession, user_id: int, is_active: bool) -> User | None:
    """The user with `is_active` set (row locked until commit), or None when there is none."""
    statement = (
        sa.update(users)
        .where(users.c.id == user_id)
        .values(is_active=is_active, updated_at=sa.func.now())
        .returning(*_USER_COLUMNS)
    )
    row = (await session.execute(statement)).one_or_none()
    return User(**row._mapping) if row else None


async def lock_user(session: AsyncSession, user_id: int) -> User | None:
    """The user's row, locked: password changes and reset requests of one user run one at a
    time (so the per-hour mail count cannot be raced)."""
    statement = sa.select(*_USER_COLUMNS).where(users.c.id == user_id).with_for_update()
    row = (await session.execute(statement)).one_or_none()
    return User(**row._mapping) if row else None


async def make_admin(
    session: AsyncSession, user_id: int, *, full_name: str, password_hash: str
) -> User:
    statement = (
        sa.update(users)
        .where(users.c.id == user_id)
        .values(
            role="Admin",
            is_active=True,
            full_name=full_name,
            password_hash=password_hash,
            updated_at=sa.func.now(),
        )
        .returning(*_USER_COLUMNS)
    )
    return User(**(await session.execute(statement)).one()._mapping)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def list_users(
    session: AsyncSession,
    *,
    search: str,
    role: str | None,
    is_active: bool | None,
    offset: int,
    limit: int,
) -> tuple[list[User], int]:
    """One page of users (newest first) matching the filters, and the total match count."""
    if not storable(search):
        return [], 0
    conditions: list[sa.ColumnElement[bool]] = []
    if search:
        pattern = f"%{_escape_like(search)}%"
        conditions.append(
            sa.or_(
                users.c.email.ilike(pattern, escape="\\"),
                users.c.full_name.ilike(pattern, escape="\\"),
            )
        )
    if role is not None:
        conditions.append(users.c.role == role)
    if is_active is not None:
        conditions.append(users.c.is_active.is_(is_active))
    total = int(
        await session.scalar(sa.select(sa.func.count()).select_from(users).where(*conditions)) or 0
    )
    if offset >= total:
        return [], total
    page = (
        sa.select(*_USER_COLUMNS)
        .where(*conditions)
        .order_by(users.c.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return [User(**row._mapping) for row in (await session.execute(page)).all()], total


async def recent_reset_count(session: AsyncSession, user_id: int, within: timedelta) -> int:
    statement = sa.select(sa.func.count()).where(
        password_resets.c.user_id == user_id,
        password_resets.c.created_at > clock_now() - within,
    )
    return int(await session.scalar(statement) or 0)


@dataclass(frozen=True)
class NewPasswordReset:
    id: int
    created_at: datetime
    expires_at: datetime


async def insert_password_reset(
    session: AsyncSession, *, user_id: int, code_hash: str, ttl: timedelta
) -> NewPasswordReset:
    """A new code's row; the database clock decides when it was made and when it expires."""
    # The clock read once: two clock_timestamp() calls in one statement differ by microseconds,
    # and the code would live a little longer than its TTL.
    clock = sa.select(clock_now().label("at")).cte("clock")
    statement = (
        sa.insert(password_resets)
        .from_select(
            ["user_id", "code_hash", "created_at", "expires_at"],
            sa.select(
                sa.literal(user_id, sa.BigInteger),
                sa.literal(code_hash, sa.String),
                clock.c.at,
                clock.c.at + ttl,
            ),
        )
        .returning(password_resets.c.id, password_resets.c.created_at, password_resets.c.expires_at)
    )
    row = (await session.execute(statement)).one()
    return NewPasswordReset(**row._mapping)


async def usable_reset(
    session: AsyncSession, code_hash: str, *, lock: bool = False
) -> PasswordResetRow | None:
    """The code's row if it is neither used nor expired."""
    table = password_resets.c
    statement = sa.select(*_PASSWORD_RESET_COLUMNS).where(
        table.code_hash == code_hash, table.used_at.is_(None), table.expires_at > clock_now()
    )
    if lock:
        statement = statement.with_for_update()
    row = (await session.execute(statement)).one_or_none()
    return PasswordResetRow(**row._mapping) if row else None


async def use_up_resets(session: AsyncSession, user_id: int) -> None:
    """Mark every open code of the user used: the one just redeemed, and any older one (a new
    password makes them all pointless, and a stolen mail must not outlive the change)."""
    await session.execute(
        sa.update(password_resets)
        .where(password_resets.c.user_id == user_id, password_resets.c.used_at.is_(None))
        .values(used_at=clock_now())
    )
