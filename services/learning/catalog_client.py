"""What learning asks of the catalog, over gRPC, on the calling student's behalf.

The channel forwards the caller's token, the request id and a deadline (libs.grpc_client), so
catalog applies its own visibility rules to the student. A downstream failure becomes our own
domain error (NOT_FOUND stays NOT_FOUND; a timeout or crash is UNAVAILABLE).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import grpc
from courseplatform.catalog.v1 import catalog_pb2, catalog_pb2_grpc

from libs.grpc_client import open_channel
from libs.grpc_errors import as_domain_error
from services.learning.domain import CatalogCourse, CatalogLesson

# ListCourses answers at most this many courses per page.
_MAX_PAGE = 100


def _course(course: catalog_pb2.Course) -> CatalogCourse:
    return CatalogCourse(
        id=course.id,
        title=course.title,
        lessons=tuple(
            CatalogLesson(id=lesson.id, title=lesson.title, order=lesson.order)
            for lesson in course.lessons
        ),
        version=course.version,
    )


class CourseLookups(Protocol):
    """What the use cases ask about courses: CatalogClient asks the catalog every time,
    usecases/lesson_copies.LessonCopies answers from learning's own copy when it can."""

    async def course_for_enrollment(self, course_id: int) -> CatalogCourse: ...

    async def current_course(self, course_id: int) -> CatalogCourse | None: ...

    async def current_courses(self, course_ids: Sequence[int]) -> dict[int, CatalogCourse]: ...

    async def close(self) -> None: ...


class CatalogClient:
    def __init__(
        self, target: str, timeout_s: float, *, count_sql_statements: bool = False
    ) -> None:
        self._target = target
        self._timeout_s = timeout_s
        self._count_sql = count_sql_statements
        self._channel: grpc.aio.Channel | None = None
        self._stub: catalog_pb2_grpc.CatalogServiceStub | None = None

    def _catalog(self) -> catalog_pb2_grpc.CatalogServiceStub:
        # grpc.aio channels bind to the running loop: open on first use, inside it.
        if self._stub is None:
            self._channel = open_channel(
                self._target, self._timeout_s, count_sql_statements=self._count_sql
            )
            self._stub = catalog_pb2_grpc.CatalogServiceStub(self._channel)
        return self._stub

    async def course_for_enrollment(self, course_id: int) -> CatalogCourse:
        """The course with its lessons if it can be enrolled in; NotFound or
        FailedPrecondition (field course) otherwise, as catalog decides."""
        try:
            reply = await self._catalog().GetCourseForEnrollment(
                catalog_pb2.GetCourseForEnrollmentRequest(course_id=course_id)
            )
        except grpc.RpcError as error:
            raise as_domain_error(error) from None
        return _course(reply.course)

    async def current_course(self, course_id: int) -> CatalogCourse | None:
        """The course's current title and lessons, or None when it no longer exists for us."""
        try:
            reply = await self._catalog().GetCourse(
                catalog_pb2.GetCourseRequest(course_id=course_id)
            )
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise as_domain_error(error) from None
        return _course(reply.course)

    async def owned_course(self, course_id: int) -> CatalogCourse:
        """The course with its current lessons if the caller owns it: NotFound when they cannot
        see it, PermissionDenied when it is someone else's (catalog's rules, GetOwnCourse)."""
        try:
            reply = await self._catalog().GetOwnCourse(
                catalog_pb2.GetOwnCourseRequest(course_id=course_id)
            )
        except grpc.RpcError as error:
            raise as_domain_error(error) from None
        return _course(reply.course)

    async def current_courses(self, course_ids: Sequence[int]) -> dict[int, CatalogCourse]:
        """Current title and lessons of each course that still exists (one call per 100)."""
        ids = sorted(set(course_ids))
        found: dict[int, CatalogCourse] = {}
        for start in range(0, len(ids), _MAX_PAGE):
            chunk = ids[start : start + _MAX_PAGE]
            try:
                reply = await self._catalog().ListCourses(
                    catalog_pb2.ListCoursesRequest(course_ids=chunk, page=1, page_size=len(chunk))
                )
            except grpc.RpcError as error:
                raise as_domain_error(error) from None
            found.update((course.id, _course(course)) for course in reply.courses)
        return found

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
