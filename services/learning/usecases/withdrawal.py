"""Withdrawing from a course: a state of the enrollment, not a delete.

The enrollment keeps its row and progress with `withdrawn_at` set; every read of the student's
enrollments and progress, the roster and the statistics leave it out. Enrolling in the course
again (enrollments.py) clears `withdrawn_at` on the same row: same id, progress as it was,
`completed_at` as it was, so a completed course is never completed (nor mailed) twice.

The withdrawal is one UPDATE of the enrollment row, so it waits for, or is waited for by, a
lesson being completed in it (which locks the row and re-checks it), and a re-enrollment
(ON CONFLICT on the same row).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs.claims import Claims
from libs.db import transaction
from libs.errors import NotFound
from services.learning import roster_store
from services.learning.domain import ENROLLMENT_NOT_FOUND, require_id, require_student


class Withdrawals:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def withdraw(self, caller: Claims, enrollment_id: int) -> None:
        require_student(caller)
        require_id(enrollment_id, ENROLLMENT_NOT_FOUND)
        async with transaction(self._sessions) as session:
            withdrawn = await roster_store.withdraw(session, caller.user_id, enrollment_id)
            if withdrawn is None:
                raise NotFound(ENROLLMENT_NOT_FOUND)
            await roster_store.apply_counts(session, withdrawn=[withdrawn])
