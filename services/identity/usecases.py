"""Identity use cases: register, log in, rotate and revoke refresh tokens, change a password.

Each runs in one transaction and raises domain errors; api.py only translates to and from protos.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs.claims import Claims
from libs.db import transaction
from libs.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from libs.revocations import RevocationPublisher, session_revocation, user_revocation
from libs.tokens import TokenIssuer, TokenVerifier
from services.identity import store
from services.identity.domain import (
    WRONG_CURRENT_PASSWORD,
    User,
    may_read_user,
    normalize_email,
    validate_new_password,
    validate_registration,
)
from services.identity.passwords import Passwords
from services.identity.throttling import LoginThrottle

BAD_CREDENTIALS = "No active account found with the given credentials"
EMAIL_TAKEN = "A user with this email already exists."
BAD_REFRESH = "Token is invalid or expired"


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str
    refresh_jti: str


async def revoke_all_sessions(
    session: AsyncSession, user_id: int, publisher: RevocationPublisher, *, reason: str
) -> None:
    """Every session of the user ends, in the caller's transaction: after a password change or
    reset, or a deactivation. The one place "all of this user's sessions end" is decided: every
    refresh token of every family is revoked and every access token issued until now is refused
    by every verifier (libs/revocations.py), so nothing that ends sessions forgets half of it.

    Published before the caller's transaction commits: when Redis refuses, the error rolls the
    transaction back (the caller answers UNAVAILABLE and nothing changed, so a retry is safe);
    a published revocation whose transaction then fails only ends sessions early."""
    await store.revoke_user_refresh_tokens(session, user_id)
    await publisher.publish(
        user_revocation(user_id, lifetime_s=publisher.lifetime_s, reason=reason)
    )


async def revoke_session(
    session: AsyncSession,
    publisher: RevocationPublisher,
    user_id: int,
    family_id: str,
    *,
    reason: str,
) -> None:
    """One login ends: its refresh family, and the access tokens issued in it (as above)."""
    await store.revoke_family(session, family_id)
    await publisher.publish(
        session_revocation(user_id, family_id, lifetime_s=publisher.lifetime_s, reason=reason)
    )


class Accounts:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        passwords: Passwords,
        issuer: TokenIssuer,
        verifier: TokenVerifier,
        throttle: LoginThrottle,
        publisher: RevocationPublisher,
    ) -> None:
        self._sessions = sessions
        self._passwords = passwords
        self._issuer = issuer
        self._verifier = verifier
        self._throttle = throttle
        self._publisher = publisher

    async def register(
        self, *, email: str, full_name: str, role: str, password: str, password_confirm: str
    ) -> User:
        # zxcvbn takes up to tens of milliseconds: off the event loop, like argon2.
        new_user = await asyncio.to_thread(
            validate_registration,
            email=email,
            full_name=full_name,
            role=role,
            password=password,
            password_confirm=password_confirm,
        )
        normalized = normalize_email(new_user.email)
        # A cheap look first spares an argon2 hash for the common duplicate; the unique index
        # still decides races.
        async with self._sessions() as session:
            if await store.email_exists(session, normalized):
                raise FailedPrecondition.on_field("email", EMAIL_TAKEN)
        password_hash = await self._passwords.hash(new_user.password)
        try:
            async with transaction(self._sessions) as session:
                return await store.insert_user(
                    session,
                    email=normalized,
                    full_name=new_user.full_name,
                    role=new_user.role.value,
                    password_hash=password_hash,
                )
        except store.EmailTaken:
            raise FailedPrecondition.on_field("email", EMAIL_TAKEN) from None

    async def login(
        self, *, email: str, password: str, client_address: str
    ) -> tuple[User, TokenPair]:
        account = normalize_email(email)
        # Before anything is hashed: a throttled flood costs no argon2 time (raises RateLimited).
        await self._throttle.before_attempt(account, client_address)
        async with self._sessions() as session:
            user = await store.user_by_email(session, account)
        password_ok = await self._passwords.verify(user.password_hash if user else None, password)
        if user is None or not password_ok or not user.is_active:
            await self._throttle.failed(account, client_address)
            raise Unauthenticated(BAD_CREDENTIALS)
        await self._throttle.succeeded(account)
        # Hash before the transaction: a pooled connection is not held through ~20 ms of argon2.
        new_hash = (
            await self._passwords.hash(password)
            if self._passwords.needs_rehash(user.password_hash)
            else None
        )
        async with transaction(self._sessions) as session:
            # Also locks the row and re-checks is_active: a deactivation committing meanwhile
            # either waits for this login (and then revokes its tokens) or refuses it here.
            if not await store.record_login(session, user.id):
                raise Unauthenticated(BAD_CREDENTIALS)
            if new_hash is not None:
                await store.update_password_hash(session, user.id, new_hash)
            pair = await self._issue_pair(session, user, family_id=uuid.uuid4().hex)
        return user, pair

    async def refresh(self, refresh_token: str) -> TokenPair:
        claims = self._verifier.verify(refresh_token, "refresh")
        reused_family: str | None = None
        async with transaction(self._sessions) as session:
            row = await store.lock_refresh_token(session, claims.jti)
            if row is None or row.user_id != claims.user_id:
                raise Unauthenticated(BAD_REFRESH)
            if row.revoked_at is not None:
                # A spent token came back: someone holds a copy. Revoke the whole family,
                # the access tokens issued in it included.
                await revoke_session(
                    session, self._publisher, row.user_id, row.family_id, reason="refresh_reuse"
                )
                reused_family = row.family_id
            else:
                # FOR SHARE: a deactivation committing meanwhile is waited for, then seen.
                user = await store.user_by_id(session, row.user_id, lock=True)
                if user is None or not user.is_active:
                    raise Unauthenticated(BAD_REFRESH)
                pair = await self._issue_pair(session, user, family_id=row.family_id)
                await store.mark_rotated(session, row.jti, pair.refresh_jti)
        if reused_family is not None:
            raise Unauthenticated(BAD_REFRESH)
        return pair

    async def revoke(self, caller: Claims, refresh_token: str) -> None:
        """Log out: the refresh token's whole family stops working. Repeating it is fine."""
        claims = self._verifier.verify(refresh_token, "refresh", revocations=False)
        if claims.user_id != caller.user_id:
            raise PermissionDenied("You can only revoke your own tokens.")
        async with transaction(self._sessions) as session:
            row = await store.lock_refresh_token(session, claims.jti)
            if row is None:
                raise Unauthenticated(BAD_REFRESH)
            await revoke_session(
                session, self._publisher, row.user_id, row.family_id, reason="logout"
            )

    async def verify_refresh(self, refresh_token: str) -> Claims:
        """A refresh token that would rotate now: signed, unexpired, not revoked or spent, of an
        active user. Checks only; rotates and revokes nothing."""
        claims = self._verifier.verify(refresh_token, "refresh")
        async with self._sessions() as session:
            row = await store.refresh_token_by_jti(session, claims.jti)
            user = await store.user_by_id(session, claims.user_id) if row else None
        if row is None or row.user_id != claims.user_id or row.revoked_at is not None:
            raise Unauthenticated(BAD_REFRESH)
        if user is None or not user.is_active:
            raise Unauthenticated(BAD_REFRESH)
        return claims

    async def change_password(
        self, caller: Claims, *, current_password: str, new_password: str, new_password_confirm: str
    ) -> None:
        """The caller's new password; every session of theirs ends (this one included)."""
        async with self._sessions() as session:
            user = await store.user_by_id(session, caller.user_id)
        if user is None or not user.is_active:
            raise Unauthenticated()
        problems: dict[str, list[str]] = {}
        if not await self._passwords.verify(user.password_hash, current_password):
            problems["current_password"] = [WRONG_CURRENT_PASSWORD]
        try:
            await asyncio.to_thread(
                validate_new_password,
                password=new_password,
                password_confirm=new_password_confirm,
                email=user.email,
                full_name=user.full_name,
            )
        except InvalidArgument as error:
            problems.update(error.field_errors)
        if problems:
            raise InvalidArgument(field_errors=problems)
        password_hash = await self._passwords.hash(new_password)
        async with transaction(self._sessions) as session:
            locked = await store.lock_user(session, user.id)
            if locked is None or locked.password_hash != user.password_hash:
                # Changed meanwhile (another change or a reset): the current password we
                # checked is no longer current.
                raise InvalidArgument.on_field("current_password", WRONG_CURRENT_PASSWORD)
            await store.update_password_hash(session, user.id, password_hash)
            await revoke_all_sessions(session, user.id, self._publisher, reason="password_changed")

    async def get_user(self, caller: Claims, user_id: int) -> User:
        target = user_id or caller.user_id
        if not may_read_user(caller, target):
            raise PermissionDenied("You can only read your own account.")
        async with self._sessions() as session:
            user = await store.user_by_id(session, target)
        if user is None:
            raise NotFound("User not found.")
        if target == caller.user_id and not user.is_active:
            # A deactivated user's tokens are revoked; should one still get here (a verifier
            # that missed the revocation), the account does not answer for itself.
            raise Unauthenticated("User is inactive.")
        return user

    async def _issue_pair(self, session: AsyncSession, user: User, *, family_id: str) -> TokenPair:
        jti = uuid.uuid4().hex
        refresh, expires_at = self._issuer.issue_refresh(
            user_id=user.id, jti=jti, session_id=family_id
        )
        await store.insert_refresh_token(
            session, jti=jti, user_id=user.id, family_id=family_id, expires_at=expires_at
        )
        access = self._issuer.issue_access(
            user_id=user.id,
            role=user.role,
            email=user.email,
            full_name=user.full_name,
            session_id=family_id,
        )
        return TokenPair(access=access, refresh=refresh, refresh_jti=jti)
