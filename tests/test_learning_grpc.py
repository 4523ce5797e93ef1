"""The learning gRPC server called directly, as grpcurl or another service would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from courseplatform.learning.v1 import learning_pb2, learning_pb2_grpc
from google.protobuf.field_mask_pb2 import FieldMask
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from libs.grpc_errors import decode_rpc_error
from tests.conftest import User, register_and_login
from tests.learning_support import published_course

SERVICE = "courseplatform.learning.v1.LearningService"

# Every RPC with a harmless request.
CALLS: list[tuple[str, Any]] = [
    ("Enroll", learning_pb2.EnrollRequest(course_id=1)),
    ("ListEnrollments", learning_pb2.ListEnrollmentsRequest()),
    ("GetEnrollment", learning_pb2.GetEnrollmentRequest(enrollment_id=1)),
    ("ListProgress", learning_pb2.ListProgressRequest()),
    ("GetProgress", learning_pb2.GetProgressRequest(progress_id=1)),
    ("UpdateProgress", learning_pb2.UpdateProgressRequest(progress_id=1)),
    ("CompleteLesson", learning_pb2.CompleteLessonRequest(progress_id=1)),
    ("ListEnrolledCourseIds", learning_pb2.ListEnrolledCourseIdsRequest()),
]


@pytest.fixture
async def channel(services: dict[str, str]) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(services["learning"]) as opened:
        yield opened


@pytest.fixture
def learning(channel: grpc.aio.Channel) -> learning_pb2_grpc.LearningServiceStub:
    return learning_pb2_grpc.LearningServiceStub(channel)


def bearer(user: User) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {user.access}"),)


async def failure(call: Any) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return decode_rpc_error(caught.value)


async def test_reflection_and_health(channel: grpc.aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo(timeout=5)
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    await call.done_writing()
    response = await call.read()
    names = {service.name for service in response.list_services_response.service}
    assert SERVICE in names
    health = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize(("method", "request_message"), CALLS)
async def test_every_rpc_needs_a_token(
    learning: learning_pb2_grpc.LearningServiceStub, method: str, request_message: Any
) -> None:
    result = await failure(getattr(learning, method)(request_message, timeout=5))
    assert result.code == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(("method", "request_message"), CALLS)
async def test_instructors_are_refused(
    learning: learning_pb2_grpc.LearningServiceStub,
    instructor: User,
    method: str,
    request_message: Any,
) -> None:
    call = getattr(learning, method)(request_message, metadata=bearer(instructor), timeout=5)
    assert (await failure(call)).code == grpc.StatusCode.PERMISSION_DENIED


async def test_field_errors_carry_bad_request_details(
    learning: learning_pb2_grpc.LearningServiceStub,
    client: httpx.AsyncClient,
    student: User,
    instructor: User,
) -> None:
    auth = bearer(student)
    missing = await failure(learning.Enroll(learning_pb2.EnrollRequest(), metadata=auth))
    assert missing.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "course" in missing.field_errors

    draft = await published_course(client, instructor, lessons=1, publish=False)
    refused = await failure(
        learning.Enroll(learning_pb2.EnrollRequest(course_id=draft.id), metadata=auth)
    )
    assert refused.code == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.field_errors == {"course": ["Only published courses can be enrolled in"]}

    paging = await failure(
        learning.ListEnrollments(learning_pb2.ListEnrollmentsRequest(page_size=101), metadata=auth)
    )
    assert paging.code == grpc.StatusCode.INVALID_ARGUMENT and "page_size" in paging.field_errors


async def test_student_flow_over_grpc(
    learning: learning_pb2_grpc.LearningServiceStub,
    client: httpx.AsyncClient,
    student: User,
    instructor: User,
) -> None:
    auth = bearer(student)
    course = await published_course(client, instructor, lessons=3)
    enrolled = await learning.Enroll(learning_pb2.EnrollRequest(course_id=course.id), metadata=auth)
    enrollment = enrolled.enrollment
    assert (enrollment.student_id, enrollment.course_id) == (student.id, course.id)
    assert not enrollment.HasField("completed_at")

    ids = await learning.ListEnrolledCourseIds(
        learning_pb2.ListEnrolledCourseIdsRequest(), metadata=auth
    )
    assert list(ids.course_ids) == [course.id]

    listed = await learning.ListProgress(
        learning_pb2.ListProgressRequest(enrollment_id=enrollment.id), metadata=auth
    )
    assert [row.lesson_order for row in listed.progress] == [1, 2, 3]
    first = listed.progress[0]

    unknown_field = await failure(
        learning.UpdateProgress(
            learning_pb2.UpdateProgressRequest(
                progress_id=first.id, update_mask=FieldMask(paths=["lesson_title"])
            ),
            metadata=auth,
        )
    )
    assert unknown_field.code == grpc.StatusCode.INVALID_ARGUMENT

    updated = await learning.UpdateProgress(
        learning_pb2.UpdateProgressRequest(
            progress_id=first.id, completed=True, update_mask=FieldMask(paths=["completed"])
        ),
        metadata=auth,
    )
    assert updated.progress.completed and updated.progress.HasField("completed_at")
    again = await learning.CompleteLesson(
        learning_pb2.CompleteLessonRequest(progress_id=first.id), metadata=auth
    )
    assert again.already_completed

    out_of_order = await failure(
        learning.CompleteLesson(
            learning_pb2.CompleteLessonRequest(progress_id=listed.progress[2].id), metadata=auth
        )
    )
    assert out_of_order.code == grpc.StatusCode.FAILED_PRECONDITION
    assert out_of_order.field_errors == {
        "lesson": ["You must complete lesson 2 (Lesson 2) before completing this lesson."]
    }

    detail = await learning.GetEnrollment(
        learning_pb2.GetEnrollmentRequest(enrollment_id=enrollment.id), metadata=auth
    )
    assert detail.summary.total_lessons == 3
    assert detail.summary.completed_lessons == 1
    assert detail.summary.completion_percentage == pytest.approx(33.33)


async def test_other_students_rows_are_not_found(
    learning: learning_pb2_grpc.LearningServiceStub,
    client: httpx.AsyncClient,
    student: User,
    instructor: User,
) -> None:
    course = await published_course(client, instructor, lessons=1)
    enrollment = (
        await learning.Enroll(
            learning_pb2.EnrollRequest(course_id=course.id), metadata=bearer(student)
        )
    ).enrollment
    rows = await learning.ListProgress(
        learning_pb2.ListProgressRequest(enrollment_id=enrollment.id), metadata=bearer(student)
    )
    stranger = bearer(await register_and_login(client, "Student"))
    calls = [
        learning.GetEnrollment(
            learning_pb2.GetEnrollmentRequest(enrollment_id=enrollment.id), metadata=stranger
        ),
        learning.ListProgress(
            learning_pb2.ListProgressRequest(enrollment_id=enrollment.id), metadata=stranger
        ),
        learning.GetProgress(
            learning_pb2.GetProgressRequest(progress_id=rows.progress[0].id), metadata=stranger
        ),
        learning.CompleteLesson(
            learning_pb2.CompleteLessonRequest(progress_id=rows.progress[0].id), metadata=stranger
        ),
    ]
    for call in calls:
        assert (await failure(call)).code == grpc.StatusCode.NOT_FOUND
