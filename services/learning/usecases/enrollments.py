"""Enrollment use cases: enroll, list, read with figures, and the enrolled course ids.

Every one serves the calling student only (domain.require_student); another student's
enrollment is NotFound, never PermissionDenied, so ids do not leak.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs.claims import Claims
from libs.db import transaction
from libs.errors import FailedPrecondition, NotFound, Unavailable
from libs.logging import get_logger
from libs.paging import page_request
from services.learning import roster_store, store
from services.learning.catalog_client import CourseLookups
from services.learning.domain import (
    ALREADY_ENROLLED,
    ENROLLMENT_NOT_FOUND,
    Enrollment,
    LessonState,
    NextLesson,
    Summary,
    next_lesson,
    require_course_id,
    require_id,
    require_student,
    summarize,
)
from services.learning.usecases.reconciliation import Reconciler, complete_if_done

log = get_logger("learning.enrollments")


class Enrollments:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        catalog: CourseLookups,
        reconciler: Reconciler,
    ) -> None:
        self._sessions = sessions
        self._catalog = catalog
        self._reconciler = reconciler

    async def enroll(self, caller: Claims, course_id: int) -> Enrollment:
        require_student(caller)
        require_course_id(course_id)
        # A cheap look first spares a catalog call on the common double click; the unique
        # constraint below still decides races. A withdrawn enrollment is enrolled again.
        async with self._sessions() as session:
            earlier = await roster_store.enrollment_of_course(session, caller.user_id, course_id)
            if earlier is not None and earlier.withdrawn_at is None:
                raise FailedPrecondition.on_field("course", ALREADY_ENROLLED)
        course = await self._catalog.course_for_enrollment(course_id)
        async with transaction(self._sessions) as session:
            enrollment = await store.insert_enrollment(
                session,
                student_id=caller.user_id,
                student_name=caller.full_name,
                course_id=course.id,
                course_title=course.title,
            )
            if enrollment is None:
                raise FailedPrecondition.on_field("course", ALREADY_ENROLLED)
            # Back rather than new: an insert's two timestamps are one `now()`, a revived row's
            # updated_at is the revival's clock_timestamp().
            back = enrollment.updated_at != enrollment.created_at
            completed = []
            if enrollment.completed_at is None:  # completed ones are final, never reconciled
                # One progress row per lesson the course has now (kept rows keep their progress).
                await store.reconcile(session, {enrollment.id: course.lessons})
                if back:  # after lessons were deleted, the open ones may all be gone
                    states = await store.lesson_states(session, [enrollment.id])
                    completed = await complete_if_done(session, [enrollment], states, caller)
            await roster_store.apply_counts(
                session,
                enrolled=[] if back else [enrollment],
                added=[enrollment] if back else [],
                completed=completed,
            )
        return enrollment

    async def list_enrollments(
        self, caller: Claims, *, page: int, page_size: int
    ) -> tuple[list[Enrollment], int]:
        require_student(caller)
        window = page_request(page, page_size)
        async with self._sessions() as session:
            rows, total = await store.list_enrollments(session, caller.user_id, window)
        return await self._with_live_titles(rows), total

    async def get_enrollment(
        self, caller: Claims, enrollment_id: int
    ) -> tuple[Enrollment, Summary, NextLesson | None]:
        require_student(caller)
        enrollment, lessons = await self._with_lessons(
            caller, require_id(enrollment_id, ENROLLMENT_NOT_FOUND)
        )
        # Usually reconciled already: then the figures come from what was just read.
        if await self._reconciler.reconcile_if_stale(
            caller, [enrollment], {enrollment.id: lessons}
        ):
            enrollment, lessons = await self._with_lessons(caller, enrollment.id)
        return enrollment, summarize(lessons), next_lesson(enrollment, lessons)

    async def enrolled_course_ids(self, caller: Claims) -> list[int]:
        require_student(caller)
        async with self._sessions() as session:
            return await store.enrolled_course_ids(session, caller.user_id)

    async def _with_lessons(
        self, caller: Claims, enrollment_id: int
    ) -> tuple[Enrollment, list[LessonState]]:
        """The caller's enrollment and the lessons that count for it (two plain SELECTs)."""
        async with self._sessions() as session:
            enrollment = await store.enrollment_of(session, caller.user_id, enrollment_id)
            if enrollment is None:
                raise NotFound(ENROLLMENT_NOT_FOUND)
            states = await store.lesson_states(session, [enrollment.id])
        return enrollment, states[enrollment.id]

    async def _with_live_titles(self, rows: list[Enrollment]) -> list[Enrollment]:
        """Course titles as the catalog has them now; the stored ones if it cannot say."""
        if not rows:
            return rows
        try:
            courses = await self._catalog.current_courses([row.course_id for row in rows])
        except Unavailable:
            log.warning("catalog unavailable; listing enrollments with stored titles")
            return rows
        return [
            replace(row, course_title=courses[row.course_id].title)
            if row.course_id in courses
            else row
            for row in rows
        ]
