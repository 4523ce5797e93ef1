"""Keeping enrollments in step with the catalog, and completing them when nothing is left.

Lessons added to a course after a student enrolled count for that student; deleted ones stop
counting. Rather than the catalog telling learning about every change (an event learning would
have to consume and that could arrive late), learning asks the catalog for the course's current
lessons whenever it needs an enrollment's figures or is about to change its progress, and
reconciles its rows against them in the same transaction that reads or writes them.

Completed enrollments are final: they are no longer reconciled, so their figures stay at 100%.
A course the catalog no longer knows (deleted) leaves its enrollments as they were recorded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs.db import transaction
from libs.tokens import Claims
from services.learning import store
from services.learning.catalog_client import CatalogClient
from services.learning.domain import CatalogCourse, LessonState, summarize
from services.learning.events import course_completed
from services.learning.store import EnrollmentRow


async def apply_catalog(
    session: AsyncSession,
    locked: Sequence[EnrollmentRow],
    courses: Mapping[int, CatalogCourse],
) -> None:
    """Reconcile the open enrollments among `locked` with their course (keyed by course id).
    A constant number of statements, whatever the number of enrollments and lessons."""
    targets = [e for e in locked if e.completed_at is None and e.course_id in courses]
    await store.refresh_course_titles(session, {e.id: courses[e.course_id].title for e in targets})
    await store.reconcile(session, {e.id: courses[e.course_id].lessons for e in targets})


async def complete_if_done(
    session: AsyncSession,
    enrollments: Sequence[EnrollmentRow],
    states: Mapping[int, Sequence[LessonState]],
    student: Claims,
) -> list[EnrollmentRow]:
    """Complete every open enrollment whose lessons are all done, and write one outbox event for
    each enrollment this transaction completed (none for one already completed)."""
    done = [
        e.id
        for e in enrollments
        if e.completed_at is None and summarize(states.get(e.id, ())).all_done
    ]
    completed = await store.complete_enrollments(session, done)
    await store.insert_outbox(session, [course_completed(e, student) for e in completed])
    return completed


class Synchronizer:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], catalog: CatalogClient) -> None:
        self._sessions = sessions
        self._catalog = catalog

    async def sync_one(self, student: Claims, enrollment: EnrollmentRow) -> None:
        if enrollment.completed_at is not None:
            return
        course = await self._catalog.current_course(enrollment.course_id)
        if course is None:
            return
        await self._apply(student, [enrollment.id], {course.id: course})

    async def sync_all_open(self, student: Claims) -> None:
        async with self._sessions() as session:
            open_enrollments = await store.open_enrollments_of(session, student.user_id)
        if not open_enrollments:
            return
        courses = await self._catalog.current_courses([e.course_id for e in open_enrollments])
        await self._apply(student, [e.id for e in open_enrollments], courses)

    async def _apply(
        self, student: Claims, enrollment_ids: Sequence[int], courses: Mapping[int, CatalogCourse]
    ) -> None:
        # The catalog was asked before the transaction: no lock is held across a network call.
        async with transaction(self._sessions) as session:
            locked = await store.lock_enrollments(session, enrollment_ids)
            await apply_catalog(session, locked, courses)
            states = await store.lesson_states(session, [e.id for e in locked])
            # A deleted last open lesson leaves nothing to complete: finish the course here.
            await complete_if_done(session, locked, states, student)
