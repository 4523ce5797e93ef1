"""Each resource's representation, as the gateway really answers it, against its `*Out` model.

The `*_json` builders and the `*Out` models are two spellings of one shape (the builders are
what is sent, the models what OpenAPI documents); every answer below is validated against its
model with unknown keys refused, so a key added to one and not the other fails here.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from gateway.resources import PageOut, read_only_fields, request_body, writable_fields
from gateway.routers.courses import CourseOut, CourseWritable, LessonOut
from gateway.routers.enrollments import EnrollmentDetailOut, EnrollmentOut
from gateway.routers.progress import ProgressOut
from tests.conftest import User
from tests.learning_support import enroll, progress_rows, published_course

REPRESENTATIONS = (CourseOut, LessonOut, EnrollmentOut, EnrollmentDetailOut, ProgressOut)


def conforms(model: type[BaseModel], body: Any) -> None:
    model.model_validate(body, strict=True)


async def ok(response: httpx.Response) -> Any:
    assert response.status_code in (200, 201), response.text
    return response.json()


async def test_every_builder_answers_what_its_model_documents(
    client: httpx.AsyncClient, instructor: User, student: User
) -> None:
    course = await published_course(client, instructor, lessons=2)
    as_teacher, as_student = instructor.headers, student.headers

    conforms(
        CourseOut, await ok(await client.get(f"/api/courses/{course.id}/", headers=as_student))
    )
    conforms(PageOut[CourseOut], await ok(await client.get("/api/courses/", headers=as_teacher)))
    patched = await client.patch(
        f"/api/courses/{course.id}/", json={"title": "Renamed"}, headers=as_teacher
    )
    conforms(CourseOut, await ok(patched))
    conforms(
        LessonOut,
        await ok(await client.get(f"/api/lessons/{course.lesson_ids[0]}/", headers=as_teacher)),
    )
    lessons_page = await client.get(
        "/api/lessons/", params={"course": course.id}, headers=as_teacher
    )
    conforms(PageOut[LessonOut], await ok(lessons_page))

    enrollment = await enroll(client, student, course.id)
    conforms(EnrollmentOut, enrollment)
    conforms(
        PageOut[EnrollmentOut], await ok(await client.get("/api/enrollments/", headers=as_student))
    )
    detail = await ok(await client.get(f"/api/enrollments/{enrollment['id']}/", headers=as_student))
    conforms(EnrollmentDetailOut, detail)

    rows = await progress_rows(client, student, enrollment["id"])
    conforms(PageOut[ProgressOut], await ok(await client.get("/api/progress/", headers=as_student)))
    conforms(
        ProgressOut,
        await ok(await client.get(f"/api/progress/{rows[0]['id']}/", headers=as_student)),
    )
    done = await client.patch(
        f"/api/progress/{rows[0]['id']}/", json={"completed": True}, headers=as_student
    )
    completed = await ok(done)
    conforms(ProgressOut, completed)
    assert completed["completed_at"] is not None  # both branches of the nullable field
    finished = await ok(
        await client.post(f"/api/progress/{rows[1]['id']}/complete/", headers=as_student)
    )
    conforms(ProgressOut, finished)
    detail = await ok(await client.get(f"/api/enrollments/{enrollment['id']}/", headers=as_student))
    conforms(EnrollmentDetailOut, detail)
    assert detail["completed_at"] is not None and detail["completion_percentage"] == 100


@pytest.mark.parametrize("model", REPRESENTATIONS, ids=lambda model: model.__name__)
def test_a_key_the_model_does_not_document_is_refused(model: type[BaseModel]) -> None:
    """What makes the test above able to fail: an extra key is an error, not ignored."""
    with pytest.raises(ValueError, match="extra"):
        model.model_validate({"surprise": 1}, strict=True)


@pytest.mark.unit
def test_read_only_and_writable_fields_split_each_representation() -> None:
    assert writable_fields(CourseOut) == ("title", "short_description")
    assert set(read_only_fields(CourseOut)) == {
        "id",
        "code",
        "status",
        "instructor",
        "instructor_name",
        "lesson_count",
        "lessons",
        "created_at",
        "updated_at",
    }
    assert writable_fields(LessonOut) == ("title", "content", "order")
    assert "course" in read_only_fields(LessonOut)
    assert writable_fields(ProgressOut) == ("completed",)
    assert writable_fields(EnrollmentOut) == ("course",)
    assert "total_lessons" in read_only_fields(EnrollmentDetailOut)


@pytest.mark.unit
def test_a_field_added_to_the_writable_model_reaches_every_derived_shape() -> None:
    """The measure of "one definition": a new writable field is one line."""

    class Writable(CourseWritable):
        language: str

    class Out(CourseOut, Writable):
        pass

    assert "language" in writable_fields(Out) and "language" not in read_only_fields(Out)
    body, patch = request_body(Out, Writable), request_body(Out, Writable, partial=True)
    assert body.model_fields["language"].is_required()
    assert not patch.model_fields["language"].is_required()
    assert body.model_json_schema()["properties"]["code"]["readOnly"] is True
