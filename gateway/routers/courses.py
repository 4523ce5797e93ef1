"""Courses routes of the contract: list, create, read, update, delete, publish.

Visibility and ownership are decided by the catalog service from the forwarded token; the
gateway only refuses students on write routes up front (403 whatever the course), checks
read-only fields against the current representation, and shapes the JSON.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from courseplatform.catalog.v1 import catalog_pb2
from fastapi import APIRouter, Request, Response
from pydantic import Field

from gateway.auth import CurrentUser, Instructor
from gateway.bodies import Body, openapi_body
from gateway.course_answers import (
    BYPASS,
    HIT,
    MISS,
    NOT_MODIFIED,
    PAGE_HEADERS,
    VALIDATOR_HEADERS,
    IfNoneMatch,
    cache_status,
    course_answer,
    course_response,
    course_written,
    filling_course,
    filling_page,
    joined,
    page_answer,
    page_response,
    shared_cache,
)
from gateway.fields import INT32_MAX, PathId
from gateway.pagination import Page
from gateway.resources import (
    PageOut,
    Representation,
    Writable,
    masked_update,
    request_body,
    writable_fields,
)
from gateway.responses import iso
from gateway.routers.course_search import CourseSearch
from gateway.routers.ops import backends

router = APIRouter(prefix="/api", tags=["courses"])

STATUS_FROM_PROTO = {
    catalog_pb2.COURSE_STATUS_DRAFT: "draft",
    catalog_pb2.COURSE_STATUS_PUBLISHED: "published",
}
Order = Annotated[int, Field(ge=1, le=INT32_MAX, description="1-based, unique within the course")]
PUBLISHED = {"status": "Course published successfully"}


# --- representations ---------------------------------------------------------------------------


def lesson_json(lesson: catalog_pb2.Lesson) -> dict[str, Any]:
    return {
        "id": lesson.id,
        "title": lesson.title,
        "content": lesson.content,
        "order": lesson.order,
        "course": lesson.course_id,
        "created_at": iso(lesson.created_at),
        "updated_at": iso(lesson.updated_at),
    }


def course_json(course: catalog_pb2.Course) -> dict[str, Any]:
    return {
        "id": course.id,
        "code": course.code,
        "title": course.title,
        "short_description": course.short_description,
        "instructor": course.instructor_id,
        "instructor_name": course.instructor_name,
        "status": STATUS_FROM_PROTO.get(course.status, ""),
        "lesson_count": course.lesson_count,
        "lessons": [lesson_json(lesson) for lesson in course.lessons],
        "created_at": iso(course.created_at),
        "updated_at": iso(course.updated_at),
    }


class LessonWritable(Writable):
    title: str = Field(description="At most 255 characters")
    content: str
    order: Order


class LessonOut(Representation, LessonWritable):
    """A lesson as the API returns it."""

    id: int
    course: int = Field(description="The course's id (a lesson does not move to another one)")
    created_at: str
    updated_at: str


class CourseWritable(Writable):
    title: str = Field(description="At most 255 characters")
    short_description: str = Field(description="At most 500 characters")


class CourseOut(Representation, CourseWritable):
    """A course as the API returns it."""

    id: int
    code: str = Field(examples=["COURSE-0001"])
    instructor: int = Field(description="The instructor's user id")
    instructor_name: str = Field(
        description="The instructor's full name when the course was created"
    )
    status: str = Field(examples=["draft", "published"])
    lesson_count: int
    lessons: list[LessonOut]
    created_at: str
    updated_at: str


# POST and PUT: every writable field (on POST the read-only echoes are ignored); PATCH: any
# subset of them.
CourseBody = request_body(CourseOut, CourseWritable)
CoursePatch = request_body(CourseOut, CourseWritable, partial=True)


def course_reply(course: catalog_pb2.Course, status_code: int = 200) -> Response:
    """A write's answer: the course with its validators."""
    answer = course_answer(course, orjson.dumps(course_json(course)))
    return course_response(answer, None, BYPASS, status_code)


# --- routes ------------------------------------------------------------------------------------


@router.get(
    "/courses/",
    summary="Courses: instructors see their own (any status), students the published ones",
    responses={200: {"model": PageOut[CourseOut], "headers": PAGE_HEADERS}, **NOT_MODIFIED},
)
async def list_courses(
    request: Request,
    caller: CurrentUser,
    params: Page,
    search: CourseSearch,
    if_none_match: IfNoneMatch = None,
) -> Response:
    # Students' plain pages are the same for every student: shared. Instructors' are their own,
    # and a searched, reordered or filtered page is not kept (too many variants to be worth it).
    plain = not any(search.values())
    cache = shared_cache(request, caller) if plain else None
    if cache is not None:
        if (hit := cache.page(params.page, params.page_size)) is not None:
            return page_response(request, params, hit, if_none_match, HIT)
        if shared := await joined(cache.page_in_flight(params.page, params.page_size)):
            return page_response(request, params, shared, if_none_match, MISS)
    source = cache_status(cache)
    with filling_page(cache, params.page, params.page_size) as fill:
        reply = await backends(request).catalog.ListCourses(
            catalog_pb2.ListCoursesRequest(page=params.page, page_size=params.page_size, **search)
        )
        answer = page_answer(
            orjson.dumps([course_json(course) for course in reply.courses]), reply.total_count
        )
        response = page_response(request, params, answer, if_none_match, source)  # 404 past the end
        if cache is not None and fill is not None:
            cache.store_page(fill, answer)
    return response


@router.post(
    "/courses/",
    status_code=201,
    summary="Create a course (instructors); it starts as a draft",
    openapi_extra=openapi_body(CourseBody),
    responses={201: {"model": CourseOut, "headers": VALIDATOR_HEADERS}},
)
async def create_course(
    request: Request, _: Instructor, body: Annotated[CourseWritable, Body(CourseBody)]
) -> Response:
    values = body.model_dump(include=set(writable_fields(CourseOut)))
    reply = await backends(request).catalog.CreateCourse(catalog_pb2.CreateCourseRequest(**values))
    return course_reply(reply.course, 201)


@router.get(
    "/courses/{course_id:id}/",
    summary="One course, with its lessons (404 when not visible to you)",
    responses={200: {"model": CourseOut, "headers": VALIDATOR_HEADERS}, **NOT_MODIFIED},
)
async def get_course(
    request: Request, caller: CurrentUser, course_id: PathId, if_none_match: IfNoneMatch = None
) -> Response:
    # What a student sees of a published course is the same for every student: shared.
    # An instructor's view (their drafts included) always comes from the catalog.
    cache = shared_cache(request, caller)
    if cache is not None:
        if (hit := cache.course(course_id)) is not None:
            return course_response(hit, if_none_match, HIT)
        if shared := await joined(cache.course_in_flight(course_id)):
            return course_response(shared, if_none_match, MISS)
    source = cache_status(cache)
    with filling_course(cache, course_id) as fill:
        reply = await backends(request).catalog.GetCourse(
            catalog_pb2.GetCourseRequest(course_id=course_id)
        )
        answer = course_answer(reply.course, orjson.dumps(course_json(reply.course)))
        if cache is not None and fill is not None and answer.published:
            cache.store_course(fill, answer)
    return course_response(answer, if_none_match, source)


async def _update_course(request: Request, course_id: int, body: CourseWritable) -> Any:
    catalog = backends(request).catalog

    async def current() -> dict[str, Any]:
        reply = await catalog.GetCourse(catalog_pb2.GetCourseRequest(course_id=course_id))
        return course_json(reply.course)

    changes, mask = await masked_update(body, CourseOut, current)
    reply = await catalog.UpdateCourse(
        catalog_pb2.UpdateCourseRequest(course_id=course_id, update_mask=mask, **changes)
    )
    course_written(request, course_id)
    return course_reply(reply.course)


@router.put(
    "/courses/{course_id:id}/",
    summary="Replace a course's writable fields (owner)",
    openapi_extra=openapi_body(CourseBody),
    responses={200: {"model": CourseOut, "headers": VALIDATOR_HEADERS}},
)
async def replace_course(
    request: Request,
    _: Instructor,
    course_id: PathId,
    body: Annotated[CourseWritable, Body(CourseBody)],
) -> Response:
    return await _update_course(request, course_id, body)


@router.patch(
    "/courses/{course_id:id}/",
    summary="Change some of a course's writable fields (owner)",
    openapi_extra=openapi_body(CoursePatch, required=False),
    responses={200: {"model": CourseOut, "headers": VALIDATOR_HEADERS}},
)
async def patch_course(
    request: Request,
    _: Instructor,
    course_id: PathId,
    body: Annotated[CourseWritable, Body(CoursePatch)],
) -> Response:
    return await _update_course(request, course_id, body)


@router.delete("/courses/{course_id:id}/", status_code=204, summary="Delete a course (owner)")
async def delete_course(request: Request, _: Instructor, course_id: PathId) -> Response:
    await backends(request).catalog.DeleteCourse(
        catalog_pb2.DeleteCourseRequest(course_id=course_id)
    )
    course_written(request, course_id)
    return Response(status_code=204)


async def _publish(request: Request, course_id: int) -> dict[str, str]:
    await backends(request).catalog.PublishCourse(
        catalog_pb2.PublishCourseRequest(course_id=course_id)
    )
    course_written(request, course_id)
    return PUBLISHED


@router.post(
    "/courses/{course_id:id}/publish/",
    summary="Publish a draft course (owner); not a draft: 400 errors.status",
    responses={400: {"description": "Not a draft (errors.status)"}},
)
async def publish_course(request: Request, _: Instructor, course_id: PathId) -> dict[str, str]:
    return await _publish(request, course_id)


@router.patch(
    "/courses/{course_id:id}/publish/",
    summary="Publish a draft course (same as POST)",
    responses={400: {"description": "Not a draft (errors.status)"}},
)
async def publish_course_patch(
    request: Request, _: Instructor, course_id: PathId
) -> dict[str, str]:
    return await _publish(request, course_id)
