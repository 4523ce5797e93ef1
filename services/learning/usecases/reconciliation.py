"""Reconciliation: keeping enrollments true to the catalog, completing them when nothing is left.

Lessons added to a course after a student enrolled count for that student; deleted ones stop
counting. Rather than the catalog telling learning about every change (an event learning would
have to consume and that could arrive late), learning asks the catalog for the course's current
lessons whenever it needs an enrollment's figures or is about to change its progress.

Reads compare what they read (plain SELECTs, no lock) with the catalog's answer
(`domain.is_reconciled`) and only when the stored rows differ run the reconciliation: one
transaction with the enrollments locked, which is the single place rows are reconciled and
enrollments left with nothing to do are completed. Writes always reconcile inside their own locked
transaction (progress.py), so a stale read can never let a completion past the rules.

Completed enrollments are final: they are no longer reconciled, so their figures stay at 100%.
A course the catalog no longer knows (deleted) leaves its enrollments as they were recorded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs.claims import Claims
from libs.db import transaction
from services.learning import roster_store, store
from services.learning.catalog_client import CourseLookups
from services.learning.domain import (
    CatalogCourse,
    Enrollment,
    LessonState,
    is_reconciled,
    summarize,
)
from services.learning.events import course_completed


async def reconcile_locked(
    session: AsyncSession,
    locked: Sequence[Enrollment],
    courses: Mapping[int, CatalogCourse],
) -> None:
    """Reconcile the open enrollments among `locked` with their course (keyed by course id).
    A constant number of statements, whatever the number of enrollments and lessons."""
    targets = [e for e in locked if e.completed_at is None and e.course_id in courses]
    await store.refresh_course_titles(session, {e.id: courses[e.course_id].title for e in targets})
    await store.reconcile(session, {e.id: courses[e.course_id].lessons for e in targets})


async def complete_if_done(
    session: AsyncSession,
    enrollments: Sequence[Enrollment],
    states: Mapping[int, Sequence[LessonState]],
    student: Claims,
) -> list[Enrollment]:
    """Complete every open enrollment whose lessons are all done, and write one outbox event for
    each enrollment this transaction completed (none for one already completed)."""
    done = [
        e.id
        for e in enrollments
        if e.completed_at is None and summarize(states.get(e.id, ())).all_done
    ]
    completed = await store.complete_enrollments(session, done)
    await store.outbox.insert(session, [course_completed(e, student) for e in completed])
    return completed


class Reconciler:
    """Reconciles the enrollments a read loaded if they differ from the catalog; else no write."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], catalog: CourseLookups) -> None:
        self._sessions = sessions
        self._catalog = catalog

    async def reconcile_if_stale(
        self,
        student: Claims,
        enrollments: Sequence[Enrollment],
        lessons: Mapping[int, Sequence[LessonState]],
    ) -> bool:
        """Compare the open ones among `enrollments`, and the lessons that count for them as the
        caller read them (keyed by enrollment id), with their courses now; reconcile those that
        differ, in one transaction. True when it did: what the caller read is stale."""
        open_enrollments = [e for e in enrollments if e.completed_at is None]
        if not open_enrollments:
            return False
        courses = await self._current_courses({e.course_id for e in open_enrollments})
        stale = [
            e.id
            for e in open_enrollments
            if e.course_id in courses
            and not is_reconciled(courses[e.course_id], e.course_title, lessons.get(e.id, ()))
        ]
        if not stale:
            return False
        await self._reconcile(student, stale, courses)
        return True

    async def _current_courses(self, course_ids: set[int]) -> dict[int, CatalogCourse]:
        """One catalog call: GetCourse for one course, ListCourses for several (both apply the
        same visibility; a course the student can no longer see is simply absent)."""
        if len(course_ids) == 1:
            course = await self._catalog.current_course(next(iter(course_ids)))
            return {course.id: course} if course is not None else {}
        return await self._catalog.current_courses(sorted(course_ids))

    async def _reconcile(
        self, student: Claims, enrollment_ids: Sequence[int], courses: Mapping[int, CatalogCourse]
    ) -> None:
        # The catalog was asked before the transaction: no lock is held across a network call.
        # Locked and re-read here: what the caller read only decides whether to come here.
        async with transaction(self._sessions) as session:
            locked = [
                e
                for e in await store.lock_enrollments(session, enrollment_ids)
                if e.withdrawn_at is None
            ]
            await reconcile_locked(session, locked, courses)
            states = await store.lesson_states(session, [e.id for e in locked])
            # A deleted last open lesson leaves nothing to complete: finish the course here.
            completed = await complete_if_done(session, locked, states, student)
            await roster_store.apply_counts(session, completed=completed)
