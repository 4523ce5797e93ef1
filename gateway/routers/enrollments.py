"""Enrollments routes of the contract: list, enroll, read with progress figures.

Students only (instructors get 403 before any backend is asked); which enrollments a student
sees, and every business rule, is the learning service's call.
"""

from __future__ import annotations

from typing import Annotated, Any

from courseplatform.learning.v1 import learning_pb2
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from gateway.auth import Student
from gateway.bodies import Body, openapi_body
from gateway.fields import Id, PathId
from gateway.pagination import Page, paginated
from gateway.resources import PageOut, Representation, Writable, request_body
from gateway.responses import iso
from gateway.routers.ops import backends

router = APIRouter(prefix="/api", tags=["enrollments"])


def enrollment_json(enrollment: learning_pb2.Enrollment) -> dict[str, Any]:
    return {
        "id": enrollment.id,
        "student": enrollment.student_id,
        "student_name": enrollment.student_name,
        "course": enrollment.course_id,
        "course_title": enrollment.course_title,
        "enrolled_at": iso(enrollment.enrolled_at),
        "completed_at": iso(enrollment.completed_at)
        if enrollment.HasField("completed_at")
        else None,
        "is_completed": enrollment.is_completed,
        "created_at": iso(enrollment.created_at),
        "updated_at": iso(enrollment.updated_at),
    }


def enrollment_detail_json(reply: learning_pb2.GetEnrollmentResponse) -> dict[str, Any]:
    summary = reply.summary
    return {
        **enrollment_json(reply.enrollment),
        "total_lessons": summary.total_lessons,
        "completed_lessons": summary.completed_lessons,
        "completion_percentage": round(summary.completion_percentage, 2),
        "next_lesson": next_lesson_json(reply.next_lesson)
        if reply.HasField("next_lesson")
        else None,
    }


def next_lesson_json(lesson: learning_pb2.NextLesson) -> dict[str, Any]:
    return {
        "progress": lesson.progress_id,
        "lesson": lesson.lesson_id,
        "title": lesson.title,
        "order": lesson.order,
    }


class EnrollmentWritable(Writable):
    course: Id


class EnrollmentOut(Representation, EnrollmentWritable):
    """An enrollment as the API returns it."""

    id: int
    student: int
    student_name: str
    course_title: str
    enrolled_at: str
    completed_at: str | None
    is_completed: bool
    created_at: str
    updated_at: str


class NextLessonOut(BaseModel):
    """Where to resume: the first open lesson in order."""

    progress: int = Field(description="The progress row, for POST /api/progress/{id}/complete/")
    lesson: int
    title: str
    order: int


class EnrollmentDetailOut(EnrollmentOut):
    total_lessons: int
    completed_lessons: int
    completion_percentage: float = Field(description="0..100, rounded to 2 decimals")
    next_lesson: NextLessonOut | None = Field(description="null once the enrollment is completed")


# The service decides every other field of the representation; a client may echo them back.
EnrollmentCreate = request_body(
    EnrollmentOut, EnrollmentWritable, read_only_help="Read-only: ignored on enrollment."
)


@router.get(
    "/enrollments/",
    summary="Your enrollments, newest first",
    responses={200: {"model": PageOut[EnrollmentOut]}},
)
async def list_enrollments(request: Request, _: Student, params: Page) -> dict[str, Any]:
    reply = await backends(request).learning.ListEnrollments(
        learning_pb2.ListEnrollmentsRequest(page=params.page, page_size=params.page_size)
    )
    return paginated(
        request, params, [enrollment_json(e) for e in reply.enrollments], reply.total_count
    )


@router.post(
    "/enrollments/",
    status_code=201,
    summary="Enroll in a published course (one progress row per lesson is created)",
    openapi_extra=openapi_body(EnrollmentCreate),
    responses={201: {"model": EnrollmentOut}, 404: {"description": "Unknown course"}},
)
async def enroll(
    request: Request, _: Student, body: Annotated[EnrollmentWritable, Body(EnrollmentCreate)]
) -> dict[str, Any]:
    reply = await backends(request).learning.Enroll(
        learning_pb2.EnrollRequest(course_id=body.course)
    )
    return enrollment_json(reply.enrollment)


@router.get(
    "/enrollments/{enrollment_id:id}/",
    summary="One of your enrollments with its progress figures",
    responses={200: {"model": EnrollmentDetailOut}},
)
async def get_enrollment(request: Request, _: Student, enrollment_id: PathId) -> dict[str, Any]:
    reply = await backends(request).learning.GetEnrollment(
        learning_pb2.GetEnrollmentRequest(enrollment_id=enrollment_id)
    )
    return enrollment_detail_json(reply)
