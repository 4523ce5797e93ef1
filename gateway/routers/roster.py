"""Routes of issue #13 that learning owns: a course's roster and statistics (its instructor),
and withdrawing from an enrollment (its student).

Students are refused the instructor routes up front (403 whatever the course), instructors the
withdrawal; who owns a course, which orderings exist and every figure are the services' call.
"""

from __future__ import annotations

from typing import Annotated, Any

from courseplatform.learning.v1 import learning_pb2
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from gateway.auth import Instructor, Student
from gateway.fields import PathId
from gateway.pagination import Page, paginated
from gateway.resources import PageOut, Representation
from gateway.routers.enrollments import enrollment_json
from gateway.routers.ops import backends

router = APIRouter(prefix="/api", tags=["roster"])

ROSTER_ORDERINGS = (
    "enrolled_at, -enrolled_at (default), completion_percentage, -completion_percentage, "
    "student_name, -student_name; ties broken by id"
)
ROSTER_FIELDS = (
    "id",
    "student",
    "student_name",
    "enrolled_at",
    "completed_at",
    "is_completed",
)


def roster_json(entry: learning_pb2.RosterEntry) -> dict[str, Any]:
    enrollment = enrollment_json(entry.enrollment)
    summary = entry.summary
    return {
        **{name: enrollment[name] for name in ROSTER_FIELDS},
        "completed_lessons": summary.completed_lessons,
        "total_lessons": summary.total_lessons,
        "completion_percentage": round(summary.completion_percentage, 2),
    }


def stats_json(reply: learning_pb2.GetCourseStatsResponse) -> dict[str, Any]:
    return {
        "course": reply.course_id,
        "enrollments": reply.enrollments,
        "completed": reply.completed,
        "in_progress": reply.in_progress,
        "completion_rate": round(reply.completion_rate, 2),
        "average_completion_percentage": round(reply.average_completion_percentage, 2),
        "lessons": [
            {
                "lesson": lesson.lesson_id,
                "title": lesson.title,
                "order": lesson.order,
                "completed": lesson.completed,
            }
            for lesson in reply.lessons
        ],
    }


class RosterEntryOut(Representation):
    """One active enrollment of a course, with its figures (counted as in
    `GET /api/enrollments/{id}/`)."""

    id: int
    student: int
    student_name: str
    enrolled_at: str
    completed_at: str | None
    is_completed: bool
    completed_lessons: int
    total_lessons: int
    completion_percentage: float = Field(description="0..100, rounded to 2 decimals")


class LessonFunnelOut(BaseModel):
    lesson: int
    title: str
    order: int
    completed: int = Field(description="Active enrollments that completed this lesson")


class CourseStatsOut(Representation):
    course: int
    enrollments: int = Field(description="Active (not withdrawn) enrollments")
    completed: int
    in_progress: int
    completion_rate: float = Field(description="completed / enrollments x 100, 2 decimals")
    average_completion_percentage: float = Field(
        description="Mean of the active enrollments' percentages, 2 decimals"
    )
    lessons: list[LessonFunnelOut] = Field(description="The course's lessons in order")


@router.get(
    "/courses/{course_id:id}/enrollments/",
    summary="A course's roster: its active enrollments with their progress (course owner)",
    responses={
        200: {"model": PageOut[RosterEntryOut]},
        400: {"description": "Unknown ordering (errors.ordering)"},
        403: {"description": "Students; another instructor's published course"},
        404: {"description": "Unknown course, or a draft you cannot see"},
    },
)
async def course_roster(
    request: Request,
    _: Instructor,
    course_id: PathId,
    params: Page,
    is_completed: Annotated[bool | None, Query(description="true or false")] = None,
    search: Annotated[
        str, Query(max_length=255, description="Case-insensitive part of the student's name")
    ] = "",
    ordering: Annotated[str, Query(description=ROSTER_ORDERINGS)] = "",
) -> dict[str, Any]:
    query = learning_pb2.ListCourseEnrollmentsRequest(
        course_id=course_id,
        page=params.page,
        page_size=params.page_size,
        search=search,
        ordering=ordering,
    )
    if is_completed is not None:
        query.is_completed = is_completed
    reply = await backends(request).learning.ListCourseEnrollments(query)
    return paginated(request, params, [roster_json(e) for e in reply.entries], reply.total_count)


@router.get(
    "/courses/{course_id:id}/stats/",
    summary="A course's completion statistics and lesson drop-off funnel (course owner)",
    responses={
        200: {"model": CourseStatsOut},
        403: {"description": "Students; another instructor's published course"},
        404: {"description": "Unknown course, or a draft you cannot see"},
    },
)
async def course_stats(request: Request, _: Instructor, course_id: PathId) -> dict[str, Any]:
    reply = await backends(request).learning.GetCourseStats(
        learning_pb2.GetCourseStatsRequest(course_id=course_id)
    )
    return stats_json(reply)


@router.delete(
    "/enrollments/{enrollment_id:id}/",
    status_code=204,
    summary="Withdraw from one of your enrollments (enrolling again restores it, progress kept)",
    responses={404: {"description": "Not one of your active enrollments"}},
)
async def withdraw(request: Request, _: Student, enrollment_id: PathId) -> Response:
    await backends(request).learning.WithdrawEnrollment(
        learning_pb2.WithdrawEnrollmentRequest(enrollment_id=enrollment_id)
    )
    return Response(status_code=204)
