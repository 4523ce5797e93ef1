"""LearningService servicer: protos in, use cases called, protos out. No rules here."""

from __future__ import annotations

import grpc
from courseplatform.learning.v1 import learning_pb2, learning_pb2_grpc

from libs.call_context import current_claims
from libs.proto_time import to_timestamp
from services.learning.domain import CourseStats, Enrollment, NextLesson, Progress, Summary
from services.learning.usecases.enrollments import Enrollments
from services.learning.usecases.progress import ProgressTracker
from services.learning.usecases.roster import CourseViews
from services.learning.usecases.withdrawal import Withdrawals


def enrollment_to_proto(row: Enrollment) -> learning_pb2.Enrollment:
    return learning_pb2.Enrollment(
        id=row.id,
        student_id=row.student_id,
        student_name=row.student_name,
        course_id=row.course_id,
        course_title=row.course_title,
        enrolled_at=to_timestamp(row.enrolled_at),
        completed_at=to_timestamp(row.completed_at),
        is_completed=row.completed_at is not None,
        created_at=to_timestamp(row.created_at),
        updated_at=to_timestamp(row.updated_at),
    )


def summary_to_proto(summary: Summary) -> learning_pb2.EnrollmentSummary:
    return learning_pb2.EnrollmentSummary(
        total_lessons=summary.total_lessons,
        completed_lessons=summary.completed_lessons,
        completion_percentage=summary.completion_percentage,
    )


def next_lesson_to_proto(lesson: NextLesson | None) -> learning_pb2.NextLesson | None:
    if lesson is None:
        return None
    return learning_pb2.NextLesson(
        progress_id=lesson.progress_id,
        lesson_id=lesson.lesson_id,
        title=lesson.title,
        order=lesson.order,
    )


def stats_to_proto(stats: CourseStats) -> learning_pb2.GetCourseStatsResponse:
    return learning_pb2.GetCourseStatsResponse(
        course_id=stats.course_id,
        enrollments=stats.enrollments,
        completed=stats.completed,
        in_progress=stats.in_progress,
        completion_rate=stats.completion_rate,
        average_completion_percentage=stats.average_completion_percentage,
        lessons=[
            learning_pb2.LessonStats(
                lesson_id=lesson.lesson_id,
                title=lesson.title,
                order=lesson.order,
                completed=lesson.completed,
            )
            for lesson in stats.lessons
        ],
    )


def progress_to_proto(row: Progress) -> learning_pb2.Progress:
    return learning_pb2.Progress(
        id=row.id,
        enrollment_id=row.enrollment_id,
        lesson_id=row.lesson_id,
        lesson_title=row.lesson_title,
        lesson_order=row.lesson_order,
        completed=row.completed,
        completed_at=to_timestamp(row.completed_at),
        created_at=to_timestamp(row.created_at),
        updated_at=to_timestamp(row.updated_at),
    )


class LearningServicer(learning_pb2_grpc.LearningServiceServicer):
    def __init__(
        self,
        enrollments: Enrollments,
        progress: ProgressTracker,
        views: CourseViews,
        withdrawals: Withdrawals,
    ) -> None:
        self._enrollments = enrollments
        self._progress = progress
        self._views = views
        self._withdrawals = withdrawals

    async def Enroll(
        self, request: learning_pb2.EnrollRequest, context: grpc.aio.ServicerContext
    ) -> learning_pb2.EnrollResponse:
        row = await self._enrollments.enroll(current_claims(), request.course_id)
        return learning_pb2.EnrollResponse(enrollment=enrollment_to_proto(row))

    async def ListEnrollments(
        self, request: learning_pb2.ListEnrollmentsRequest, context: grpc.aio.ServicerContext
    ) -> learning_pb2.ListEnrollmentsResponse:
        rows, total = await self._enrollments.list_enrollments(
            current_claims(), page=request.page, page_size=request.page_size
        )
        return learning_pb2.ListEnrollmentsResponse(
            enrollments=[enrollment_to_proto(row) for row in rows], total_count=total
        )

    async def GetEnrollment(
        self, request: learning_pb2.GetEnrollmentRequest, context: grpc.aio.ServicerContext
    ) -> learning_pb2.GetEnrollmentResponse:
        row, summary, resume = await self._enrollments.get_enrollment(
            current_claims(), request.enrollment_id
        )
        return learning_pb2.GetEnrollmentResponse(
            enrollment=enrollment_to_proto(row),
            summary=summary_to_proto(summary),
            next_lesson=next_lesson_to_proto(resume),
        )

    async def ListProgress(
        self, request: learning_pb2.ListProgressRequest, context: grpc.aio.ServicerContext
    ) -> learning_pb2.ListProgressResponse:
        rows, total = await self._progress.list_progress(
            current_claims(),
            enrollment_id=request.enrollment_id,
            page=request.page,
            page_size=request.page_size,
        )
        return learning_pb2.ListProgressResponse(
            progress=[progress_to_proto(row) for row in rows], total_count=total
        )

    async def GetProgress(
        self, request: learning_pb2.GetProgressRequest, context: grpc.aio.ServicerContext
    ) -> learning_pb2.GetProgressResponse:
        row = await self._progress.get_progress(current_claims(), request.progress_id)
        return learning_pb2.GetProgressResponse(progress=progress_to_proto(row))

    async def UpdateProgress(
        self, request: learning_pb2.UpdateProgressRequest, context: grpc.aio.ServicerContext
    ) -> learning_pb2.UpdateProgressResponse:
        row = await self._progress.update_progress(
            current_claims(),
            request.progress_id,
            completed=request.completed,
            mask=list(request.update_mask.paths),
        )
        return learning_pb2.UpdateProgressResponse(progress=progress_to_proto(row))

    async def CompleteLesson(
        self, request: learning_pb2.CompleteLessonRequest, context: grpc.aio.ServicerContext
    ) -> learning_pb2.CompleteLessonResponse:
        row, already = await self._progress.complete_lesson(current_claims(), request.progress_id)
        return learning_pb2.CompleteLessonResponse(
            progress=progress_to_proto(row), already_completed=already
        )

    async def ListEnrolledCourseIds(
        self,
        request: learning_pb2.ListEnrolledCourseIdsRequest,
        context: grpc.aio.ServicerContext,
    ) -> learning_pb2.ListEnrolledCourseIdsResponse:
        ids = await self._enrollments.enrolled_course_ids(current_claims())
        return learning_pb2.ListEnrolledCourseIdsResponse(course_ids=ids)

    async def WithdrawEnrollment(
        self,
        request: learning_pb2.WithdrawEnrollmentRequest,
        context: grpc.aio.ServicerContext,
    ) -> learning_pb2.WithdrawEnrollmentResponse:
        await self._withdrawals.withdraw(current_claims(), request.enrollment_id)
        return learning_pb2.WithdrawEnrollmentResponse()

    async def ListCourseEnrollments(
        self,
        request: learning_pb2.ListCourseEnrollmentsRequest,
        context: grpc.aio.ServicerContext,
    ) -> learning_pb2.ListCourseEnrollmentsResponse:
        entries, total = await self._views.roster(
            current_claims(),
            request.course_id,
            page=request.page,
            page_size=request.page_size,
            is_completed=request.is_completed if request.HasField("is_completed") else None,
            search=request.search,
            ordering=request.ordering,
        )
        return learning_pb2.ListCourseEnrollmentsResponse(
            entries=[
                learning_pb2.RosterEntry(
                    enrollment=enrollment_to_proto(entry.enrollment),
                    summary=summary_to_proto(entry.summary),
                )
                for entry in entries
            ],
            total_count=total,
        )

    async def GetCourseStats(
        self, request: learning_pb2.GetCourseStatsRequest, context: grpc.aio.ServicerContext
    ) -> learning_pb2.GetCourseStatsResponse:
        return stats_to_proto(await self._views.stats(current_claims(), request.course_id))
