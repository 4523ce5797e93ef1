"""Progress routes of the contract: list, read, update (complete) and complete a lesson.

Students only. The order rule, one-way completion and course completion are the learning
service's; the gateway checks read-only fields against the current row and shapes the JSON.
"""

from __future__ import annotations

from typing import Annotated, Any

from courseplatform.learning.v1 import learning_pb2
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from gateway.auth import Student
from gateway.bodies import Body, openapi_body
from gateway.fields import INT64_MAX, PathId
from gateway.pagination import Page, paginated
from gateway.resources import PageOut, Representation, Writable, masked_update, request_body
from gateway.responses import iso
from gateway.routers.ops import backends

router = APIRouter(prefix="/api", tags=["progress"])

ALREADY_COMPLETED = {"message": "Lesson is already completed"}


def progress_json(progress: learning_pb2.Progress) -> dict[str, Any]:
    return {
        "id": progress.id,
        "enrollment": progress.enrollment_id,
        "lesson": progress.lesson_id,
        "lesson_title": progress.lesson_title,
        "completed": progress.completed,
        "completed_at": iso(progress.completed_at) if progress.HasField("completed_at") else None,
        "created_at": iso(progress.created_at),
        "updated_at": iso(progress.updated_at),
    }


class ProgressWritable(Writable):
    completed: bool = Field(description="true completes the lesson; completion is one-way")


class ProgressOut(Representation, ProgressWritable):
    """A progress row as the API returns it."""

    id: int
    enrollment: int
    lesson: int
    lesson_title: str
    completed_at: str | None
    created_at: str
    updated_at: str


class AlreadyCompleted(BaseModel):
    message: str


ProgressPut = request_body(ProgressOut, ProgressWritable)
ProgressPatch = request_body(ProgressOut, ProgressWritable, partial=True)


@router.get(
    "/progress/",
    summary="Your lesson progress, by enrollment then lesson order",
    responses={200: {"model": PageOut[ProgressOut]}},
)
async def list_progress(
    request: Request,
    _: Student,
    params: Page,
    enrollment: Annotated[
        int | None, Query(ge=1, le=INT64_MAX, description="Only rows of this enrollment")
    ] = None,
) -> dict[str, Any]:
    reply = await backends(request).learning.ListProgress(
        learning_pb2.ListProgressRequest(
            enrollment_id=enrollment or 0, page=params.page, page_size=params.page_size
        )
    )
    return paginated(
        request, params, [progress_json(row) for row in reply.progress], reply.total_count
    )


async def _get_progress(request: Request, progress_id: int) -> learning_pb2.Progress:
    reply = await backends(request).learning.GetProgress(
        learning_pb2.GetProgressRequest(progress_id=progress_id)
    )
    return reply.progress


@router.get(
    "/progress/{progress_id:id}/",
    summary="One of your progress rows",
    responses={200: {"model": ProgressOut}},
)
async def get_progress(request: Request, _: Student, progress_id: PathId) -> dict[str, Any]:
    return progress_json(await _get_progress(request, progress_id))


async def _update_progress(
    request: Request, progress_id: int, body: ProgressWritable
) -> dict[str, Any]:
    async def current() -> dict[str, Any]:
        return progress_json(await _get_progress(request, progress_id))

    changes, mask = await masked_update(body, ProgressOut, current)
    reply = await backends(request).learning.UpdateProgress(
        learning_pb2.UpdateProgressRequest(progress_id=progress_id, update_mask=mask, **changes)
    )
    return progress_json(reply.progress)


@router.put(
    "/progress/{progress_id:id}/",
    summary="Complete a lesson: {completed: true} (lessons complete in order)",
    openapi_extra=openapi_body(ProgressPut),
    responses={200: {"model": ProgressOut}},
)
async def replace_progress(
    request: Request,
    _: Student,
    progress_id: PathId,
    body: Annotated[ProgressWritable, Body(ProgressPut)],
) -> dict[str, Any]:
    return await _update_progress(request, progress_id, body)


@router.patch(
    "/progress/{progress_id:id}/",
    summary="Complete a lesson: {completed: true} (lessons complete in order)",
    openapi_extra=openapi_body(ProgressPatch, required=False),
    responses={200: {"model": ProgressOut}},
)
async def patch_progress(
    request: Request,
    _: Student,
    progress_id: PathId,
    body: Annotated[ProgressWritable, Body(ProgressPatch)],
) -> dict[str, Any]:
    return await _update_progress(request, progress_id, body)


@router.post(
    "/progress/{progress_id:id}/complete/",
    summary="Complete a lesson (lessons complete in order); a completed one answers a message",
    responses={
        200: {"model": ProgressOut | AlreadyCompleted},
        400: {"description": "An earlier lesson is still open (errors.lesson)"},
    },
)
async def complete_lesson(request: Request, _: Student, progress_id: PathId) -> dict[str, Any]:
    reply = await backends(request).learning.CompleteLesson(
        learning_pb2.CompleteLessonRequest(progress_id=progress_id)
    )
    if reply.already_completed:
        return ALREADY_COMPLETED
    return progress_json(reply.progress)
