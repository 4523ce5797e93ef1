"""Courses as learning knows them: its own copy of each course's lessons when that copy can be
trusted, else the catalog, whose answer refreshes the copy.

`LessonCopies` answers the same questions as the catalog client (catalog_client.CourseLookups),
so reconciliation and the use cases do not change: they simply stop calling the catalog while
the copy is fresh. A copy is trusted (domain.copy_is_trusted) only while this process's
CourseChanged reader is healthy, was confirmed by the catalog after that reader started, and no
event announced a higher version since. Anything else (no copy, an event or a gap in versions,
Redis down) asks the catalog with the calling student's token, exactly as every read did before
the copy existed, so a missed event costs speed, never correctness.

All callers are students (every learning RPC requires it), and catalog shows every student the
same thing (published courses), so one copy per course serves every caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from libs.db import transaction
from services.learning import store
from services.learning.catalog_client import CourseLookups
from services.learning.domain import CatalogCourse, LessonCopy, copy_is_trusted


class LessonCopies:
    def __init__(
        self,
        catalog: CourseLookups,
        sessions: async_sessionmaker[AsyncSession],
        events_seen_since: Callable[[], datetime | None],
        *,
        max_age_s: float,
    ) -> None:
        self._catalog = catalog
        self._sessions = sessions
        self._events_seen_since = events_seen_since
        self._max_age_s = max_age_s

    async def course_for_enrollment(self, course_id: int) -> CatalogCourse:
        """Always the catalog (whether a course can be enrolled in is its decision); the answer
        becomes the copy, so the new student's first reads need no catalog call."""
        checked_at = datetime.now(UTC)
        course = await self._catalog.course_for_enrollment(course_id)
        async with transaction(self._sessions) as session:
            await store.store_copies(session, [course], [], checked_at)
        return course

    async def current_course(self, course_id: int) -> CatalogCourse | None:
        return (await self.current_courses([course_id])).get(course_id)

    async def current_courses(self, course_ids: Sequence[int]) -> dict[int, CatalogCourse]:
        """Each course that still exists, from its copy where trusted, else from the catalog
        (one call for all the others); a course the catalog no longer knows is absent."""
        ids = sorted(set(course_ids))
        if not ids:
            return {}
        since = self._events_seen_since()
        async with self._sessions() as session:
            copies = await store.lesson_copies(session, ids)
        now = datetime.now(UTC)
        found: dict[int, CatalogCourse] = {}
        unsure: list[int] = []
        for course_id in ids:
            copy = copies.get(course_id)
            if copy is not None and copy_is_trusted(
                copy, events_seen_since=since, now=now, max_age_s=self._max_age_s
            ):
                if copy.course is not None:
                    found[course_id] = copy.course
            else:
                unsure.append(course_id)
        if unsure:
            found.update(await self._refresh(unsure, copies, since is not None))
        return found

    async def close(self) -> None:
        await self._catalog.close()

    async def _refresh(
        self, course_ids: list[int], copies: Mapping[int, LessonCopy], reader_healthy: bool
    ) -> dict[int, CatalogCourse]:
        # Taken before the call: a change the answer may miss was committed after this moment.
        checked_at = datetime.now(UTC)
        if len(course_ids) == 1:
            course = await self._catalog.current_course(course_ids[0])
            answered = {course.id: course} if course is not None else {}
        else:
            answered = await self._catalog.current_courses(course_ids)
        gone = [course_id for course_id in course_ids if course_id not in answered]
        # While the reader is down no copy can become trusted: write only what changed.
        if not reader_healthy:
            answered_changed = [
                course
                for course in answered.values()
                if (copy := copies.get(course.id)) is None or copy.course != course
            ]
            gone = [course_id for course_id in gone if not _known_gone(copies.get(course_id))]
        else:
            answered_changed = list(answered.values())
        if answered_changed or gone:
            async with transaction(self._sessions) as session:
                await store.store_copies(session, answered_changed, gone, checked_at)
        return answered


def _known_gone(copy: LessonCopy | None) -> bool:
    return copy is not None and copy.gone
