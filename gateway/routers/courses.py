"""Courses routes of the contract: list, create, read, update, delete, publish.

Visibility and ownership are decided by the catalog service from the forwarded token; the
gateway only refuses students on write routes up front (403 whatever the course), checks
read-only fields against the current representation, and shapes the JSON.
"""

from __future__ import annotations

from typing import Annotated, Any

from courseplatform.catalog.v1 import catalog_pb2
from fastapi import APIRouter, Request, Response
from google.protobuf.field_mask_pb2 import FieldMask
from pydantic import BaseModel, Field

from gateway.auth import CurrentUser, Instructor
from gateway.bodies import Body, RequestModel, check_read_only, openapi_body
from gateway.fields import PathId
from gateway.pagination import Page, paginated
from gateway.responses import iso
from gateway.routers.ops import backends

router = APIRouter(prefix="/api", tags=["courses"])

STATUS_FROM_PROTO = {
    catalog_pb2.COURSE_STATUS_DRAFT: "draft",
    catalog_pb2.COURSE_STATUS_PUBLISHED: "published",
}
WRITABLE = ("title", "short_description")
READ_ONLY = (
    "id",
    "code",
    "status",
    "instructor",
    "instructor_name",
    "lesson_count",
    "lessons",
    "created_at",
    "updated_at",
)
PUBLISHED = {"status": "Course published successfully"}
_READ_ONLY_HELP = "Read-only: accepted when equal to the current value, else 400."


def read_only_field(description: str = _READ_ONLY_HELP) -> Any:
    """A representation field a body may carry back unchanged; `readOnly` keeps it out of
    Swagger UI's request examples."""
    return Field(default=None, description=description, json_schema_extra={"readOnly": True})


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


class LessonOut(BaseModel):
    """A lesson as the API returns it (documentation only)."""

    id: int
    title: str
    content: str
    order: int = Field(ge=1, description="1-based position, unique within the course")
    course: int
    created_at: str
    updated_at: str


class CourseOut(BaseModel):
    """A course as the API returns it (documentation only)."""

    id: int
    code: str = Field(examples=["COURSE-0001"])
    title: str
    short_description: str
    instructor: int = Field(description="The instructor's user id")
    instructor_name: str = Field(
        description="The instructor's full name when the course was created"
    )
    status: str = Field(examples=["draft", "published"])
    lesson_count: int
    lessons: list[LessonOut]
    created_at: str
    updated_at: str


class CoursePage(BaseModel):
    count: int
    next: str | None
    previous: str | None
    results: list[CourseOut]


# --- request bodies ----------------------------------------------------------------------------


class CourseReadOnlyFields(RequestModel):
    """Fields of the representation a client may send back unchanged (clients PUT what they GET)."""

    id: Any = read_only_field()
    code: Any = read_only_field()
    status: Any = read_only_field()
    instructor: Any = read_only_field()
    instructor_name: Any = read_only_field()
    lesson_count: Any = read_only_field()
    lessons: Any = read_only_field()
    created_at: Any = read_only_field()
    updated_at: Any = read_only_field()


class CourseBody(CourseReadOnlyFields):
    """POST and PUT: every writable field. On POST the read-only fields are ignored."""

    title: str = Field(description="At most 255 characters")
    short_description: str = Field(description="At most 500 characters")


class CoursePatch(CourseReadOnlyFields):
    """PATCH: any subset of the writable fields (null is not a value)."""

    title: str = Field(default=None, description="At most 255 characters")  # type: ignore[assignment]
    short_description: str = Field(default=None, description="At most 500 characters")  # type: ignore[assignment]


# --- routes ------------------------------------------------------------------------------------


@router.get(
    "/courses/",
    summary="Courses: instructors see their own (any status), students the published ones",
    responses={200: {"model": CoursePage}},
)
async def list_courses(request: Request, _: CurrentUser, params: Page) -> dict[str, Any]:
    reply = await backends(request).catalog.ListCourses(
        catalog_pb2.ListCoursesRequest(page=params.page, page_size=params.page_size)
    )
    results = [course_json(course) for course in reply.courses]
    return paginated(request, params, results, reply.total_count)


@router.post(
    "/courses/",
    status_code=201,
    summary="Create a course (instructors); it starts as a draft",
    openapi_extra=openapi_body(CourseBody),
    responses={201: {"model": CourseOut}},
)
async def create_course(
    request: Request, _: Instructor, body: Annotated[CourseBody, Body(CourseBody)]
) -> dict[str, Any]:
    reply = await backends(request).catalog.CreateCourse(
        catalog_pb2.CreateCourseRequest(title=body.title, short_description=body.short_description)
    )
    return course_json(reply.course)


@router.get(
    "/courses/{course_id:id}/",
    summary="One course, with its lessons (404 when not visible to you)",
    responses={200: {"model": CourseOut}},
)
async def get_course(request: Request, _: CurrentUser, course_id: PathId) -> dict[str, Any]:
    reply = await backends(request).catalog.GetCourse(
        catalog_pb2.GetCourseRequest(course_id=course_id)
    )
    return course_json(reply.course)


async def _update_course(request: Request, course_id: int, body: CourseReadOnlyFields) -> Any:
    catalog = backends(request).catalog

    async def current() -> dict[str, Any]:
        reply = await catalog.GetCourse(catalog_pb2.GetCourseRequest(course_id=course_id))
        return course_json(reply.course)

    await check_read_only(body, READ_ONLY, current)
    sent = body.model_dump(exclude_unset=True)
    reply = await catalog.UpdateCourse(
        catalog_pb2.UpdateCourseRequest(
            course_id=course_id,
            title=sent.get("title", ""),
            short_description=sent.get("short_description", ""),
            update_mask=FieldMask(paths=[name for name in WRITABLE if name in sent]),
        )
    )
    return course_json(reply.course)


@router.put(
    "/courses/{course_id:id}/",
    summary="Replace a course's writable fields (owner)",
    openapi_extra=openapi_body(CourseBody),
    responses={200: {"model": CourseOut}},
)
async def replace_course(
    request: Request,
    _: Instructor,
    course_id: PathId,
    body: Annotated[CourseBody, Body(CourseBody)],
) -> dict[str, Any]:
    return await _update_course(request, course_id, body)


@router.patch(
    "/courses/{course_id:id}/",
    summary="Change some of a course's writable fields (owner)",
    openapi_extra=openapi_body(CoursePatch, required=False),
    responses={200: {"model": CourseOut}},
)
async def patch_course(
    request: Request,
    _: Instructor,
    course_id: PathId,
    body: Annotated[CoursePatch, Body(CoursePatch)],
) -> dict[str, Any]:
    return await _update_course(request, course_id, body)


@router.delete("/courses/{course_id:id}/", status_code=204, summary="Delete a course (owner)")
async def delete_course(request: Request, _: Instructor, course_id: PathId) -> Response:
    await backends(request).catalog.DeleteCourse(
        catalog_pb2.DeleteCourseRequest(course_id=course_id)
    )
    return Response(status_code=204)


async def _publish(request: Request, course_id: int) -> dict[str, str]:
    await backends(request).catalog.PublishCourse(
        catalog_pb2.PublishCourseRequest(course_id=course_id)
    )
    return PUBLISHED


@router.post(
    "/courses/{course_id:id}/publish/",
    summary="Publish a draft course (owner); not a draft: 400 errors.status",
)
async def publish_course(request: Request, _: Instructor, course_id: PathId) -> dict[str, str]:
    return await _publish(request, course_id)


@router.patch(
    "/courses/{course_id:id}/publish/",
    summary="Publish a draft course (same as POST)",
)
async def publish_course_patch(
    request: Request, _: Instructor, course_id: PathId
) -> dict[str, str]:
    return await _publish(request, course_id)
