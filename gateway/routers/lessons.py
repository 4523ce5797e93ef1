"""Lessons routes of the contract: list, create, bulk create, read, update, delete.

Who reads a lesson is the catalog's rule (services/catalog/domain.py): a lesson is readable by
id exactly when its course is, so `GET /api/lessons/{id}/` is the catalog's GetLesson as is.
The list is a filtered view: instructors get what the catalog lists them (their own courses);
students get lessons of courses they are enrolled in: the gateway asks which those are
(`enrolled_course_ids`) and narrows the catalog query to them.
"""

from __future__ import annotations

from typing import Annotated, Any

from courseplatform.catalog.v1 import catalog_pb2
from courseplatform.learning.v1 import learning_pb2
from fastapi import APIRouter, Query, Request, Response

from gateway.auth import CurrentUser, Instructor
from gateway.bodies import Body, RequestModel, openapi_body
from gateway.course_answers import course_written
from gateway.fields import INT64_MAX, Id, PathId
from gateway.pagination import Page, paginated
from gateway.resources import PageOut, masked_update, request_body
from gateway.routers.courses import LessonOut, LessonWritable, lesson_json
from gateway.routers.ops import backends

router = APIRouter(prefix="/api", tags=["lessons"])


async def enrolled_course_ids(request: Request) -> list[int]:
    """The calling student's enrolled course ids, as the learning service knows them (it is the
    only thing in this module that knows about enrollments)."""
    reply = await backends(request).learning.ListEnrolledCourseIds(
        learning_pb2.ListEnrolledCourseIdsRequest()
    )
    return list(reply.course_ids)


class LessonNew(LessonWritable):
    """POST: the writable fields and the course the lesson goes into."""

    course: Id


class BulkCreate(RequestModel):
    course: Id
    lessons: list[LessonWritable]


LessonCreate = request_body(LessonOut, LessonNew, name="LessonCreate")
LessonPut = request_body(LessonOut, LessonWritable)
LessonPatch = request_body(LessonOut, LessonWritable, partial=True)


# --- routes ------------------------------------------------------------------------------------


@router.get(
    "/lessons/",
    summary="Lessons by course, then order: instructors' own courses, students' enrolled ones",
    responses={200: {"model": PageOut[LessonOut]}},
)
async def list_lessons(
    request: Request,
    claims: CurrentUser,
    params: Page,
    course: Annotated[int | None, Query(ge=1, le=INT64_MAX, description="Course id")] = None,
) -> dict[str, Any]:
    query = catalog_pb2.ListLessonsRequest(
        course_id=course or 0, page=params.page, page_size=params.page_size
    )
    if not claims.is_instructor:
        enrolled = await enrolled_course_ids(request)
        allowed = enrolled if course is None else [course] if course in enrolled else []
        if not allowed:
            # An empty course_ids filter would mean "no filter": answer the empty page here.
            return paginated(request, params, [], 0)
        query.course_ids.extend(allowed)
    reply = await backends(request).catalog.ListLessons(query)
    return paginated(request, params, [lesson_json(x) for x in reply.lessons], reply.total_count)


@router.post(
    "/lessons/",
    status_code=201,
    summary="Add a lesson to your course",
    openapi_extra=openapi_body(LessonCreate),
    responses={201: {"model": LessonOut}, 404: {"description": "Unknown course"}},
)
async def create_lesson(
    request: Request, _: Instructor, body: Annotated[LessonNew, Body(LessonCreate)]
) -> dict[str, Any]:
    reply = await backends(request).catalog.CreateLesson(
        catalog_pb2.CreateLessonRequest(
            course_id=body.course,
            lesson=catalog_pb2.NewLesson(
                **body.model_dump(include=set(LessonWritable.model_fields))
            ),
        )
    )
    course_written(request, body.course)
    return lesson_json(reply.lesson)


@router.post(
    "/lessons/bulk_create/",
    status_code=201,
    summary="Add several lessons to your course: all or nothing",
    openapi_extra=openapi_body(BulkCreate),
    responses={201: {"model": list[LessonOut]}, 404: {"description": "Unknown course"}},
)
async def bulk_create_lessons(
    request: Request, _: Instructor, body: Annotated[BulkCreate, Body(BulkCreate)]
) -> list[dict[str, Any]]:
    reply = await backends(request).catalog.BulkCreateLessons(
        catalog_pb2.BulkCreateLessonsRequest(
            course_id=body.course,
            lessons=[catalog_pb2.NewLesson(**item.model_dump()) for item in body.lessons],
        )
    )
    course_written(request, body.course)
    return [lesson_json(lesson) for lesson in reply.lessons]


async def _get_lesson(request: Request, lesson_id: int) -> catalog_pb2.Lesson:
    reply = await backends(request).catalog.GetLesson(
        catalog_pb2.GetLessonRequest(lesson_id=lesson_id)
    )
    return reply.lesson


@router.get(
    "/lessons/{lesson_id:id}/",
    summary="One lesson: readable whenever its course is (published, or your own)",
    responses={200: {"model": LessonOut}},
)
async def get_lesson(request: Request, _: CurrentUser, lesson_id: PathId) -> dict[str, Any]:
    return lesson_json(await _get_lesson(request, lesson_id))


async def _update_lesson(request: Request, lesson_id: int, body: LessonWritable) -> Any:
    async def current() -> dict[str, Any]:
        return lesson_json(await _get_lesson(request, lesson_id))

    changes, mask = await masked_update(body, LessonOut, current)
    reply = await backends(request).catalog.UpdateLesson(
        catalog_pb2.UpdateLessonRequest(lesson_id=lesson_id, update_mask=mask, **changes)
    )
    course_written(request, reply.lesson.course_id)
    return lesson_json(reply.lesson)


@router.put(
    "/lessons/{lesson_id:id}/",
    summary="Replace a lesson's writable fields (course owner)",
    openapi_extra=openapi_body(LessonPut),
    responses={200: {"model": LessonOut}},
)
async def replace_lesson(
    request: Request,
    _: Instructor,
    lesson_id: PathId,
    body: Annotated[LessonWritable, Body(LessonPut)],
) -> dict[str, Any]:
    return await _update_lesson(request, lesson_id, body)


@router.patch(
    "/lessons/{lesson_id:id}/",
    summary="Change some of a lesson's writable fields (course owner)",
    openapi_extra=openapi_body(LessonPatch, required=False),
    responses={200: {"model": LessonOut}},
)
async def patch_lesson(
    request: Request,
    _: Instructor,
    lesson_id: PathId,
    body: Annotated[LessonWritable, Body(LessonPatch)],
) -> dict[str, Any]:
    return await _update_lesson(request, lesson_id, body)


@router.delete(
    "/lessons/{lesson_id:id}/", status_code=204, summary="Delete a lesson (course owner)"
)
async def delete_lesson(request: Request, _: Instructor, lesson_id: PathId) -> Response:
    await backends(request).catalog.DeleteLesson(
        catalog_pb2.DeleteLessonRequest(lesson_id=lesson_id)
    )
    course_written(request, None)  # which course is not known here; its event will say
    return Response(status_code=204)
