"""Password reset by mail: request a code (mailed by the notifier), redeem it for a new password.

- A request answers the same, in about the same time, for any valid email, registered or not:
  nothing tells an attacker whether an account exists. For a registered active user under the
  mail limit it writes the code's hash and a PasswordResetRequested outbox row in one transaction
  (the relay puts it on its stream; the notifier mails it with its exactly-once record).
- The code: 192 random bits (`secrets.token_urlsafe(24)`), stored only as its SHA-256, valid for
  PASSWORD_RESET_TTL_S, single use. At most PASSWORD_RESET_MAILS_PER_HOUR codes per account per
  hour; further requests are dropped silently (same answer).
- Redeeming it sets the new password (the policy applies), uses up every open code of the user
  and ends all their sessions (usecases.revoke_all_sessions), in one transaction.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs.db import transaction
from libs.errors import InvalidArgument
from libs.logging import get_logger
from libs.revocations import RevocationPublisher
from libs.settings import Settings
from services.identity import store
from services.identity.domain import (
    REQUIRED,
    email_problem,
    normalize_email,
    validate_new_password,
)
from services.identity.events import password_reset_requested
from services.identity.passwords import Passwords
from services.identity.usecases import revoke_all_sessions

log = get_logger("identity.password_reset")

CODE_BYTES = 24  # 192 bits
MAIL_WINDOW = timedelta(hours=1)
BAD_CODE = "This reset code is invalid, used or expired."


def new_code() -> str:
    return secrets.token_urlsafe(CODE_BYTES)


def code_hash(code: str) -> str:
    # A fast hash is enough: the code is random, long and short-lived, nothing to brute-force.
    return hashlib.sha256(code.encode("utf-8", errors="surrogatepass")).hexdigest()


@dataclass(frozen=True)
class ResetPolicy:
    ttl: timedelta
    mails_per_hour: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ResetPolicy:
        return cls(
            ttl=timedelta(seconds=settings.password_reset_ttl_s),
            mails_per_hour=settings.password_reset_mails_per_hour,
        )


class PasswordResets:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        passwords: Passwords,
        policy: ResetPolicy,
        publisher: RevocationPublisher,
    ) -> None:
        self._sessions = sessions
        self._passwords = passwords
        self._policy = policy
        self._publisher = publisher

    async def request(self, email: str) -> None:
        """Queue a reset mail if `email` is a registered active account under its mail limit.
        Raises only for a syntactically invalid email; every valid one gets the same None."""
        email = email.strip()
        if problem := email_problem(email):  # the registration rule
            raise InvalidArgument.on_field("email", problem)
        # The same work up to the user lookup for everyone; the extra insert for a real account
        # is a few milliseconds, far inside the spread of the round trip.
        async with transaction(self._sessions) as session:
            found = await store.user_by_email(session, normalize_email(email))
            if found is None or not found.is_active:
                return
            user = await store.lock_user(session, found.id)  # one request per user at a time
            if user is None:
                return
            sent = await store.recent_reset_count(session, user.id, MAIL_WINDOW)
            if sent >= self._policy.mails_per_hour:
                log.info("password reset dropped: mail limit reached", user_id=user.id)
                return
            code = new_code()
            reset = await store.insert_password_reset(
                session, user_id=user.id, code_hash=code_hash(code), ttl=self._policy.ttl
            )
            event = password_reset_requested(
                user,
                reset_id=reset.id,
                code=code,
                expires_at=reset.expires_at,
                requested_at=reset.created_at,
            )
            await store.outbox.insert(session, [event])
        log.info("password reset requested", user_id=user.id, reset_id=reset.id)

    async def confirm(self, *, code: str, new_password: str, new_password_confirm: str) -> None:
        """Set the new password with a live code; every session of the user ends."""
        if not code.strip():
            raise InvalidArgument.on_field("code", REQUIRED)
        hashed = code_hash(code.strip())
        async with self._sessions() as session:
            reset = await store.usable_reset(session, hashed)
            user = await store.user_by_id(session, reset.user_id) if reset else None
        if reset is None or user is None or not user.is_active:
            raise InvalidArgument.on_field("code", BAD_CODE)
        await asyncio.to_thread(
            validate_new_password,
            password=new_password,
            password_confirm=new_password_confirm,
            email=user.email,
            full_name=user.full_name,
        )
        password_hash = await self._passwords.hash(new_password)
        async with transaction(self._sessions) as session:
            # Again under the lock: two redemptions of one code, one wins.
            if await store.usable_reset(session, hashed, lock=True) is None:
                raise InvalidArgument.on_field("code", BAD_CODE)
            await store.lock_user(session, user.id)
            await store.update_password_hash(session, user.id, password_hash)
            await store.use_up_resets(session, user.id)
            await revoke_all_sessions(session, user.id, self._publisher, reason="password_reset")
        log.info("password reset completed", user_id=user.id, reset_id=reset.id)
