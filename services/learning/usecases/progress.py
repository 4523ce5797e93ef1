"""Progress use cases: list, read, update and complete a student's lesson progress.

Completing a lesson runs in one transaction with its enrollment locked: reconcile against the
course's current lessons, check the order rule, mark the lesson, and when it was the last open
one set `completed_at` (only if still unset) and write the CourseCompleted outbox row.
Reads answer from plain SELECTs and reconcile only when the catalog changed (reconciliation.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs.claims import Claims
from libs.db import transaction
from libs.errors import FailedPrecondition, InvalidArgument, NotFound
from libs.paging import page_request
from services.learning import roster_store, store
from services.learning.catalog_client import CourseLookups
from services.learning.domain import (
    COURSE_GONE,
    ENROLLMENT_NOT_FOUND,
    PROGRESS_NOT_FOUND,
    Enrollment,
    LessonState,
    Progress,
    after_completing,
    check_can_complete,
    check_completed_change,
    require_id,
    require_student,
)
from services.learning.usecases.reconciliation import Reconciler, complete_if_done, reconcile_locked

UPDATABLE_FIELDS = ("completed",)


class ProgressTracker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        catalog: CourseLookups,
        reconciler: Reconciler,
    ) -> None:
        self._sessions = sessions
        self._catalog = catalog
        self._reconciler = reconciler

    async def list_progress(
        self, caller: Claims, *, enrollment_id: int, page: int, page_size: int
    ) -> tuple[list[Progress], int]:
        require_student(caller)
        window = page_request(page, page_size)
        if enrollment_id < 0:
            raise InvalidArgument.on_field("enrollment", "Ensure this value is greater than 0.")
        # The page and what the reconciled check needs, read in one go; usually that is all.
        async with self._sessions() as session:
            if enrollment_id:
                enrollment = await store.enrollment_of(session, caller.user_id, enrollment_id)
                if enrollment is None:
                    raise NotFound(ENROLLMENT_NOT_FOUND)
                checked = [enrollment]
            else:
                checked = await store.open_enrollments_of(session, caller.user_id)
            lessons = await _lessons_to_check(session, checked)
            listed = await store.list_progress(
                session, caller.user_id, enrollment_id or None, window
            )
        if await self._reconciler.reconcile_if_stale(caller, checked, lessons):
            async with self._sessions() as session:
                listed = await store.list_progress(
                    session, caller.user_id, enrollment_id or None, window
                )
        return listed

    async def get_progress(self, caller: Claims, progress_id: int) -> Progress:
        require_student(caller)
        require_id(progress_id, PROGRESS_NOT_FOUND)
        async with self._sessions() as session:
            enrollment = await self._enrollment_of_progress(session, caller, progress_id)
            lessons = await _lessons_to_check(session, [enrollment])
            row = await store.progress_of(session, caller.user_id, progress_id)
        if await self._reconciler.reconcile_if_stale(caller, [enrollment], lessons):
            async with self._sessions() as session:
                row = await store.progress_of(session, caller.user_id, progress_id)
        if row is None:  # the lesson left the course
            raise NotFound(PROGRESS_NOT_FOUND)
        return row

    async def update_progress(
        self, caller: Claims, progress_id: int, *, completed: bool, mask: Sequence[str]
    ) -> Progress:
        """Changes the masked fields (only `completed` is writable); an empty mask changes
        nothing. Completion is one-way."""
        require_student(caller)
        unknown = [path for path in mask if path not in UPDATABLE_FIELDS]
        if unknown:
            raise InvalidArgument.on_field(unknown[0], "This field cannot be updated.")
        current = await self.get_progress(caller, progress_id)
        if "completed" not in mask or not check_completed_change(current.completed, completed):
            return current
        row, _ = await self._complete(caller, progress_id)
        return row

    async def complete_lesson(self, caller: Claims, progress_id: int) -> tuple[Progress, bool]:
        """The completed row, and whether it had been completed before this call."""
        require_student(caller)
        async with self._sessions() as session:
            current = await store.progress_of(
                session, caller.user_id, require_id(progress_id, PROGRESS_NOT_FOUND)
            )
        if current is not None and current.completed:
            return current, True
        return await self._complete(caller, progress_id)

    async def _complete(self, caller: Claims, progress_id: int) -> tuple[Progress, bool]:
        async with self._sessions() as session:
            enrollment = await self._enrollment_of_progress(session, caller, progress_id)
        course = None
        if enrollment.completed_at is None:
            course = await self._catalog.current_course(enrollment.course_id)
            if course is None:
                raise FailedPrecondition.on_field("lesson", COURSE_GONE)
        async with transaction(self._sessions) as session:
            [locked] = await store.lock_enrollments(session, [enrollment.id])
            if locked.withdrawn_at is not None:  # withdrawn while we asked the catalog
                raise NotFound(PROGRESS_NOT_FOUND)
            if course is not None:
                await reconcile_locked(session, [locked], {course.id: course})
            states = (await store.lesson_states(session, [locked.id]))[locked.id]
            target = next((s for s in states if s.progress_id == progress_id), None)
            if target is None:
                raise NotFound(PROGRESS_NOT_FOUND)  # the lesson left the course
            if target.completed:  # a concurrent request got there first
                row = await store.progress_of(session, caller.user_id, progress_id)
                assert row is not None
                return row, True
            check_can_complete(states, target)
            row = await store.complete_progress(session, progress_id)
            assert row is not None  # the enrollment lock keeps the row open until here
            completed = await complete_if_done(
                session, [locked], {locked.id: after_completing(states, target)}, caller
            )
            await roster_store.apply_counts(
                session, completed=completed, lesson_completed=[(locked.course_id, row.lesson_id)]
            )
            return row, False

    async def _enrollment_of_progress(
        self, session: AsyncSession, caller: Claims, progress_id: int
    ) -> Enrollment:
        require_id(progress_id, PROGRESS_NOT_FOUND)
        enrollment_id = await store.enrollment_id_of_progress(session, caller.user_id, progress_id)
        enrollment = (
            await store.enrollment_of(session, caller.user_id, enrollment_id)
            if enrollment_id is not None
            else None
        )
        if enrollment is None:
            raise NotFound(PROGRESS_NOT_FOUND)
        return enrollment


async def _lessons_to_check(
    session: AsyncSession, enrollments: Sequence[Enrollment]
) -> dict[int, list[LessonState]]:
    """The lessons that count for the open ones among `enrollments`, for the reconciled check
    (completed enrollments are final and never checked). One plain SELECT, or none."""
    open_ids = [e.id for e in enrollments if e.completed_at is None]
    return await store.lesson_states(session, open_ids)
