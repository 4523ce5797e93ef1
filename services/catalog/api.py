"""CatalogService servicer: protos in, use cases called with the verified caller, protos out."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeAlias

import grpc
from courseplatform.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from google.protobuf.message import Message

from libs.call_context import current_claims
from libs.proto_time import set_timestamp, to_timestamp
from services.catalog.domain import (
    COURSE_FIELDS,
    LESSON_FIELDS,
    CourseStatus,
    CourseWithLessons,
    Lesson,
    NewLesson,
)
from services.catalog.usecases import Catalog

STATUS_TO_PROTO = {
    CourseStatus.DRAFT.value: catalog_pb2.COURSE_STATUS_DRAFT,
    CourseStatus.PUBLISHED.value: catalog_pb2.COURSE_STATUS_PUBLISHED,
}

Context: TypeAlias = grpc.aio.ServicerContext


def writable_fields(request: Message, fields: Iterable[str]) -> dict[str, Any]:
    """The request's values of the domain's writable fields (the proto names them the same)."""
    return {name: getattr(request, name) for name in fields}


def lesson_to_proto(lesson: Lesson) -> catalog_pb2.Lesson:
    return catalog_pb2.Lesson(
        id=lesson.id,
        course_id=lesson.course_id,
        title=lesson.title,
        content=lesson.content,
        order=lesson.order,
        created_at=to_timestamp(lesson.created_at),
        updated_at=to_timestamp(lesson.updated_at),
    )


def course_to_proto(item: CourseWithLessons) -> catalog_pb2.Course:
    """Lessons are added in place and timestamps set field by field: on a list page (200
    lessons) that is half the Python objects and time of building each part and copying it."""
    course = item.course
    message = catalog_pb2.Course(
        id=course.id,
        code=course.code,
        title=course.title,
        short_description=course.short_description,
        instructor_id=course.instructor_id,
        instructor_name=course.instructor_name,
        status=STATUS_TO_PROTO[course.status],
        lesson_count=len(item.lessons),
        version=course.version,
    )
    set_timestamp(message.created_at, course.created_at)
    set_timestamp(message.updated_at, course.updated_at)
    add = message.lessons.add
    for lesson in item.lessons:
        added = add(
            id=lesson.id,
            course_id=lesson.course_id,
            title=lesson.title,
            content=lesson.content,
            order=lesson.order,
        )
        set_timestamp(added.created_at, lesson.created_at)
        set_timestamp(added.updated_at, lesson.updated_at)
    return message


def new_lesson(message: catalog_pb2.NewLesson) -> NewLesson:
    return NewLesson(title=message.title, content=message.content, order=message.order)


class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    async def CreateCourse(
        self, request: catalog_pb2.CreateCourseRequest, context: Context
    ) -> catalog_pb2.CreateCourseResponse:
        course = await self._catalog.create_course(
            current_claims(), writable_fields(request, COURSE_FIELDS)
        )
        return catalog_pb2.CreateCourseResponse(course=course_to_proto(course))

    async def GetCourse(
        self, request: catalog_pb2.GetCourseRequest, context: Context
    ) -> catalog_pb2.GetCourseResponse:
        course = await self._catalog.get_course(current_claims(), request.course_id)
        return catalog_pb2.GetCourseResponse(course=course_to_proto(course))

    async def ListCourses(
        self, request: catalog_pb2.ListCoursesRequest, context: Context
    ) -> catalog_pb2.ListCoursesResponse:
        courses, total = await self._catalog.list_courses(
            current_claims(),
            page=request.page,
            page_size=request.page_size,
            course_ids=list(request.course_ids),
            search=request.search,
            ordering=request.ordering,
            instructor_id=request.instructor_id,
        )
        return catalog_pb2.ListCoursesResponse(
            courses=[course_to_proto(course) for course in courses], total_count=total
        )

    async def UpdateCourse(
        self, request: catalog_pb2.UpdateCourseRequest, context: Context
    ) -> catalog_pb2.UpdateCourseResponse:
        course = await self._catalog.update_course(
            current_claims(),
            request.course_id,
            writable_fields(request, COURSE_FIELDS),
            list(request.update_mask.paths),
        )
        return catalog_pb2.UpdateCourseResponse(course=course_to_proto(course))

    async def DeleteCourse(
        self, request: catalog_pb2.DeleteCourseRequest, context: Context
    ) -> catalog_pb2.DeleteCourseResponse:
        await self._catalog.delete_course(current_claims(), request.course_id)
        return catalog_pb2.DeleteCourseResponse()

    async def PublishCourse(
        self, request: catalog_pb2.PublishCourseRequest, context: Context
    ) -> catalog_pb2.PublishCourseResponse:
        course = await self._catalog.publish_course(current_claims(), request.course_id)
        return catalog_pb2.PublishCourseResponse(course=course_to_proto(course))

    async def GetCourseForEnrollment(
        self, request: catalog_pb2.GetCourseForEnrollmentRequest, context: Context
    ) -> catalog_pb2.GetCourseForEnrollmentResponse:
        course = await self._catalog.course_for_enrollment(current_claims(), request.course_id)
        return catalog_pb2.GetCourseForEnrollmentResponse(course=course_to_proto(course))

    async def GetOwnCourse(
        self, request: catalog_pb2.GetOwnCourseRequest, context: Context
    ) -> catalog_pb2.GetOwnCourseResponse:
        course = await self._catalog.own_course(current_claims(), request.course_id)
        return catalog_pb2.GetOwnCourseResponse(course=course_to_proto(course))

    async def CreateLesson(
        self, request: catalog_pb2.CreateLessonRequest, context: Context
    ) -> catalog_pb2.CreateLessonResponse:
        lesson = await self._catalog.create_lesson(
            current_claims(),
            request.course_id,
            title=request.lesson.title,
            content=request.lesson.content,
            order=request.lesson.order,
        )
        return catalog_pb2.CreateLessonResponse(lesson=lesson_to_proto(lesson))

    async def BulkCreateLessons(
        self, request: catalog_pb2.BulkCreateLessonsRequest, context: Context
    ) -> catalog_pb2.BulkCreateLessonsResponse:
        lessons = await self._catalog.bulk_create_lessons(
            current_claims(), request.course_id, [new_lesson(item) for item in request.lessons]
        )
        return catalog_pb2.BulkCreateLessonsResponse(
            lessons=[lesson_to_proto(lesson) for lesson in lessons]
        )

    async def GetLesson(
        self, request: catalog_pb2.GetLessonRequest, context: Context
    ) -> catalog_pb2.GetLessonResponse:
        lesson = await self._catalog.get_lesson(current_claims(), request.lesson_id)
        return catalog_pb2.GetLessonResponse(lesson=lesson_to_proto(lesson))

    async def ListLessons(
        self, request: catalog_pb2.ListLessonsRequest, context: Context
    ) -> catalog_pb2.ListLessonsResponse:
        lessons, total = await self._catalog.list_lessons(
            current_claims(),
            course_id=request.course_id,
            course_ids=list(request.course_ids),
            page=request.page,
            page_size=request.page_size,
            unpaged=request.unpaged,
        )
        return catalog_pb2.ListLessonsResponse(
            lessons=[lesson_to_proto(lesson) for lesson in lessons], total_count=total
        )

    async def UpdateLesson(
        self, request: catalog_pb2.UpdateLessonRequest, context: Context
    ) -> catalog_pb2.UpdateLessonResponse:
        lesson = await self._catalog.update_lesson(
            current_claims(),
            request.lesson_id,
            writable_fields(request, LESSON_FIELDS),
            list(request.update_mask.paths),
        )
        return catalog_pb2.UpdateLessonResponse(lesson=lesson_to_proto(lesson))

    async def DeleteLesson(
        self, request: catalog_pb2.DeleteLessonRequest, context: Context
    ) -> catalog_pb2.DeleteLessonResponse:
        await self._catalog.delete_lesson(current_claims(), request.lesson_id)
        return catalog_pb2.DeleteLessonResponse()
