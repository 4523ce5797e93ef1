"""Identity use cases for administrators: list users, deactivate and reactivate them.

Rules are in domain.py (who may do what); each use case runs in one transaction.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs.claims import Claims, Role
from libs.db import transaction
from libs.errors import NotFound
from libs.paging import page_request
from libs.revocations import RevocationPublisher
from services.identity import store
from services.identity.domain import User, ensure_admin, ensure_may_set_active
from services.identity.usecases import revoke_all_sessions

USER_NOT_FOUND = "User not found."


class UserAdministration:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], publisher: RevocationPublisher
    ) -> None:
        self._sessions = sessions
        self._publisher = publisher

    async def list_users(
        self,
        caller: Claims,
        *,
        search: str,
        role: Role | None,
        is_active: bool | None,
        page: int,
        page_size: int,
    ) -> tuple[list[User], int]:
        ensure_admin(caller)
        window = page_request(page, page_size)
        async with self._sessions() as session:
            return await store.list_users(
                session,
                search=search.strip(),
                role=role.value if role is not None else None,
                is_active=is_active,
                offset=window.offset,
                limit=window.limit,
            )

    async def set_active(self, caller: Claims, user_id: int, is_active: bool) -> User:
        """Deactivation ends every session of the user at once (every verifier refuses their
        tokens within seconds); reactivation lets them log in again, old tokens stay revoked."""
        ensure_may_set_active(caller, user_id, is_active)
        async with transaction(self._sessions) as session:
            user = await store.set_active(session, user_id, is_active)
            if user is None:
                raise NotFound(USER_NOT_FOUND)
            if not is_active:
                await revoke_all_sessions(session, user_id, self._publisher, reason="deactivated")
            return user
