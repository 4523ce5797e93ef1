"""CatalogService called directly over gRPC (as grpcurl or the learning service would)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from courseplatform.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from google.protobuf.field_mask_pb2 import FieldMask
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.grpc_errors import decode_rpc_error
from tests.conftest import User, register_and_login


@pytest.fixture
async def stub(services: dict[str, str]) -> AsyncIterator[catalog_pb2_grpc.CatalogServiceStub]:
    async with grpc.aio.insecure_channel(services["catalog"]) as channel:
        yield catalog_pb2_grpc.CatalogServiceStub(channel)


def auth(user: User) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {user.access}"),)


async def rpc_failure(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def create_course(
    stub: catalog_pb2_grpc.CatalogServiceStub, user: User, title: str = "gRPC course"
) -> catalog_pb2.Course:
    reply = await stub.CreateCourse(
        catalog_pb2.CreateCourseRequest(title=title, short_description="over the wire"),
        metadata=auth(user),
    )
    return reply.course


async def test_every_method_needs_a_token(stub: catalog_pb2_grpc.CatalogServiceStub) -> None:
    error = await rpc_failure(
        stub.CreateCourse(catalog_pb2.CreateCourseRequest(title="t", short_description="d"))
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    error = await rpc_failure(
        stub.ListCourses(
            catalog_pb2.ListCoursesRequest(), metadata=(("authorization", "Bearer forged"),)
        )
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_field_errors_carry_bad_request_violations(
    stub: catalog_pb2_grpc.CatalogServiceStub, instructor: User
) -> None:
    error = await rpc_failure(
        stub.CreateCourse(
            catalog_pb2.CreateCourseRequest(title="", short_description="x" * 501),
            metadata=auth(instructor),
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    failure = decode_rpc_error(error)
    assert set(failure.field_errors) == {"title", "short_description"}


async def test_code_sequence_and_snapshot_name(
    stub: catalog_pb2_grpc.CatalogServiceStub, instructor: User
) -> None:
    first = await create_course(stub, instructor)
    second = await create_course(stub, instructor)
    assert first.code.startswith("COURSE-") and second.code.startswith("COURSE-")
    assert int(second.code.removeprefix("COURSE-")) > int(first.code.removeprefix("COURSE-"))
    assert first.status == catalog_pb2.COURSE_STATUS_DRAFT
    assert first.instructor_id == instructor.id
    assert first.instructor_name == instructor.full_name


async def test_student_cannot_see_a_draft(
    stub: catalog_pb2_grpc.CatalogServiceStub, instructor: User, student: User
) -> None:
    course = await create_course(stub, instructor)
    error = await rpc_failure(
        stub.GetCourse(catalog_pb2.GetCourseRequest(course_id=course.id), metadata=auth(student))
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    # Nor change it: hidden means NOT_FOUND, not PERMISSION_DENIED.
    error = await rpc_failure(
        stub.PublishCourse(
            catalog_pb2.PublishCourseRequest(course_id=course.id), metadata=auth(student)
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_student_calling_write_methods_on_a_published_course_is_denied(
    stub: catalog_pb2_grpc.CatalogServiceStub, instructor: User, student: User
) -> None:
    course = await create_course(stub, instructor)
    await stub.PublishCourse(
        catalog_pb2.PublishCourseRequest(course_id=course.id), metadata=auth(instructor)
    )
    error = await rpc_failure(
        stub.CreateLesson(
            catalog_pb2.CreateLessonRequest(
                course_id=course.id,
                lesson=catalog_pb2.NewLesson(title="t", content="c", order=1),
            ),
            metadata=auth(student),
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error = await rpc_failure(
        stub.CreateCourse(
            catalog_pb2.CreateCourseRequest(title="t", short_description="d"),
            metadata=auth(student),
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_course_for_enrollment(
    stub: catalog_pb2_grpc.CatalogServiceStub, instructor: User, student: User
) -> None:
    course = await create_course(stub, instructor)
    error = await rpc_failure(
        stub.GetCourseForEnrollment(
            catalog_pb2.GetCourseForEnrollmentRequest(course_id=course.id), metadata=auth(student)
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert list(decode_rpc_error(error).field_errors) == ["course"]

    await stub.BulkCreateLessons(
        catalog_pb2.BulkCreateLessonsRequest(
            course_id=course.id,
            lessons=[catalog_pb2.NewLesson(title=f"L{n}", content="c", order=n) for n in (2, 1)],
        ),
        metadata=auth(instructor),
    )
    await stub.PublishCourse(
        catalog_pb2.PublishCourseRequest(course_id=course.id), metadata=auth(instructor)
    )
    reply = await stub.GetCourseForEnrollment(
        catalog_pb2.GetCourseForEnrollmentRequest(course_id=course.id), metadata=auth(student)
    )
    assert reply.course.lesson_count == 2
    assert [lesson.order for lesson in reply.course.lessons] == [1, 2]

    error = await rpc_failure(
        stub.GetCourseForEnrollment(
            catalog_pb2.GetCourseForEnrollmentRequest(course_id=2**62), metadata=auth(student)
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_internal_lesson_and_course_lookups_by_ids(
    stub: catalog_pb2_grpc.CatalogServiceStub,
    client: httpx.AsyncClient,
    instructor: User,
    student: User,
) -> None:
    published = await create_course(stub, instructor, "published")
    draft = await create_course(stub, instructor, "draft")
    for course in (published, draft):
        await stub.BulkCreateLessons(
            catalog_pb2.BulkCreateLessonsRequest(
                course_id=course.id,
                lessons=[catalog_pb2.NewLesson(title="t", content="c", order=n) for n in (1, 2, 3)],
            ),
            metadata=auth(instructor),
        )
    await stub.PublishCourse(
        catalog_pb2.PublishCourseRequest(course_id=published.id), metadata=auth(instructor)
    )

    # The learning service asks with the student's token: drafts stay out.
    lessons = await stub.ListLessons(
        catalog_pb2.ListLessonsRequest(course_ids=[published.id, draft.id], unpaged=True),
        metadata=auth(student),
    )
    assert lessons.total_count == 3
    assert {lesson.course_id for lesson in lessons.lessons} == {published.id}
    courses = await stub.ListCourses(
        catalog_pb2.ListCoursesRequest(course_ids=[published.id, draft.id]), metadata=auth(student)
    )
    assert [course.id for course in courses.courses] == [published.id]

    # Another instructor's course_ids filter only narrows their own scope.
    other = await register_and_login(client, "Instructor")
    mine = await stub.ListCourses(
        catalog_pb2.ListCoursesRequest(course_ids=[published.id]), metadata=auth(other)
    )
    assert mine.total_count == 0

    error = await rpc_failure(
        stub.ListLessons(catalog_pb2.ListLessonsRequest(unpaged=True), metadata=auth(student))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(decode_rpc_error(error).field_errors) == ["unpaged"]


async def test_update_mask_names_known_fields_only(
    stub: catalog_pb2_grpc.CatalogServiceStub, instructor: User
) -> None:
    course = await create_course(stub, instructor)
    reply = await stub.UpdateCourse(
        catalog_pb2.UpdateCourseRequest(
            course_id=course.id, title="Renamed", update_mask=FieldMask(paths=["title"])
        ),
        metadata=auth(instructor),
    )
    assert (reply.course.title, reply.course.short_description) == ("Renamed", "over the wire")
    error = await rpc_failure(
        stub.UpdateCourse(
            catalog_pb2.UpdateCourseRequest(
                course_id=course.id, update_mask=FieldMask(paths=["status"])
            ),
            metadata=auth(instructor),
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(decode_rpc_error(error).field_errors) == ["update_mask"]


async def test_health_reports_serving(services: dict[str, str]) -> None:
    async with grpc.aio.insecure_channel(services["catalog"]) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="courseplatform.catalog.v1.CatalogService")
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
