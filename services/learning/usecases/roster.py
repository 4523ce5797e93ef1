"""The instructor views of a course: its roster and its statistics.

Who may look is the catalog's call (GetOwnCourse with the caller's token: the owner only; a
course the caller cannot see is NotFound, someone else's visible one PermissionDenied), so the
visibility and ownership rules stay in one place. The same call gives the course's current
lessons, which the figures are counted against. Students are refused before anything is asked.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs.claims import Claims
from libs.errors import NotFound
from libs.paging import page_request
from services.learning import roster_store
from services.learning.catalog_client import CatalogClient
from services.learning.domain import (
    CatalogCourse,
    CourseStats,
    RosterEntry,
    course_stats,
    require_instructor,
    roster_filter,
)

COURSE_NOT_FOUND = "Course not found."


class CourseViews:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], catalog: CatalogClient) -> None:
        self._sessions = sessions
        self._catalog = catalog

    async def roster(
        self,
        caller: Claims,
        course_id: int,
        *,
        page: int,
        page_size: int,
        is_completed: bool | None,
        search: str,
        ordering: str,
    ) -> tuple[list[RosterEntry], int]:
        require_instructor(caller)
        window = page_request(page, page_size)
        chosen = roster_filter(is_completed, search, ordering)
        course = await self._own_course(course_id)
        async with self._sessions() as session:
            return await roster_store.roster_page(
                session, course.id, _lesson_ids(course), chosen, window
            )

    async def stats(self, caller: Claims, course_id: int) -> CourseStats:
        require_instructor(caller)
        course = await self._own_course(course_id)
        async with self._sessions() as session:
            totals = await roster_store.course_aggregates(session, course.id, _lesson_ids(course))
        return course_stats(
            course,
            enrollments=totals.enrollments,
            completed=totals.completed,
            open_completions=totals.open_completions,
            completed_by_lesson=totals.completed_by_lesson,
        )

    async def _own_course(self, course_id: int) -> CatalogCourse:
        if course_id <= 0:
            raise NotFound(COURSE_NOT_FOUND)
        return await self._catalog.owned_course(course_id)


def _lesson_ids(course: CatalogCourse) -> list[int]:
    return [lesson.id for lesson in course.lessons]
