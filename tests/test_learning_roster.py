"""A course's roster and statistics (issue #13) through the gateway, over gRPC and against the
store: who may look, the figures (counted as each student's own enrollment detail counts them),
filters, orderings with ties, lessons added and deleted after enrollments, and a statement count
that does not grow with the page or the number of enrollments."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
from courseplatform.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from courseplatform.learning.v1 import learning_pb2, learning_pb2_grpc

from libs.db import create_engine, session_factory
from libs.grpc_errors import decode_rpc_error
from libs.settings import Settings
from services.learning.catalog_client import CatalogClient
from services.learning.usecases.roster import CourseViews
from tests.conftest import User, assert_error_body, register_and_login
from tests.learning_support import (
    Course,
    complete,
    enroll,
    enrollment_detail,
    progress_rows,
    published_course,
)
from tests.sql_support import counting_statements
from tests.test_learning_read_path import acting_as

UNKNOWN_COURSE = 2**62


@dataclass
class Classroom:
    """One instructor's published course with three lessons and four students at different
    points, enrolled in this order: Alice 1 of 3, Bob all 3 (completed), Carol and Dave none."""

    owner: User
    course: Course
    draft: Course
    students: dict[str, User]
    enrollments: dict[str, int]


async def completed_lessons(
    client: httpx.AsyncClient, student: User, enrollment_id: int, how_many: int
) -> None:
    rows = await progress_rows(client, student, enrollment_id)
    for row in rows[:how_many]:
        assert (await complete(client, student, row["id"])).status_code == 200


@pytest.fixture(scope="module")
async def classroom(client: httpx.AsyncClient) -> Classroom:
    owner = await register_and_login(client, "Instructor")
    course = await published_course(client, owner, lessons=3)
    draft = await published_course(client, owner, lessons=1, publish=False)
    tag = str(uuid.uuid4().int)[:6]  # digits: no letter a search could match
    students: dict[str, User] = {}
    enrollments: dict[str, int] = {}
    for key, name, done in (
        ("alice", f"Alice {tag}", 1),
        ("bob", f"Bob {tag}", 3),
        ("carol", f"Carol {tag}", 0),
        ("dave", f"Dave {tag}", 0),
    ):
        students[key] = await register_and_login(client, "Student", full_name=name)
        enrollment = await enroll(client, students[key], course.id)
        enrollments[key] = enrollment["id"]
        await completed_lessons(client, students[key], enrollment["id"], done)
    return Classroom(owner, course, draft, students, enrollments)


async def roster(
    client: httpx.AsyncClient, user: User, course_id: int, **params: Any
) -> httpx.Response:
    return await client.get(
        f"/api/courses/{course_id}/enrollments/", params=params, headers=user.headers
    )


def ids(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [row["id"] for row in response.json()["results"]]


async def test_access_owner_other_instructor_student_unknown(
    client: httpx.AsyncClient, classroom: Classroom, student: User
) -> None:
    other = await register_and_login(client, "Instructor")
    course, draft = classroom.course.id, classroom.draft.id
    for path in ("enrollments", "stats"):
        assert (
            await client.get(f"/api/courses/{course}/{path}/", headers=classroom.owner.headers)
        ).status_code == 200
        assert (
            await client.get(f"/api/courses/{draft}/{path}/", headers=classroom.owner.headers)
        ).status_code == 200
        # Another instructor: a draft they cannot see is 404, a published course 403.
        assert_error_body(
            await client.get(f"/api/courses/{draft}/{path}/", headers=other.headers), 404
        )
        assert_error_body(
            await client.get(f"/api/courses/{course}/{path}/", headers=other.headers), 403
        )
        # Students, even one enrolled in the course.
        assert_error_body(
            await client.get(f"/api/courses/{course}/{path}/", headers=student.headers), 403
        )
        enrolled = classroom.students["alice"]
        assert_error_body(
            await client.get(f"/api/courses/{course}/{path}/", headers=enrolled.headers), 403
        )
        assert_error_body(
            await client.get(
                f"/api/courses/{UNKNOWN_COURSE}/{path}/", headers=classroom.owner.headers
            ),
            404,
        )
        assert_error_body(await client.get(f"/api/courses/{course}/{path}/"), 401)


async def test_roster_rows_carry_the_figures_of_each_enrollment_detail(
    client: httpx.AsyncClient, classroom: Classroom
) -> None:
    response = await roster(client, classroom.owner, classroom.course.id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == 4
    rows = {row["id"]: row for row in body["results"]}
    for key, enrollment_id in classroom.enrollments.items():
        student = classroom.students[key]
        detail = await enrollment_detail(client, student, enrollment_id)
        row = rows[enrollment_id]
        assert set(row) == {
            "id",
            "student",
            "student_name",
            "enrolled_at",
            "completed_at",
            "is_completed",
            "completed_lessons",
            "total_lessons",
            "completion_percentage",
        }
        assert row["student"] == student.id
        assert row["student_name"] == student.full_name
        for field in (
            "enrolled_at",
            "completed_at",
            "is_completed",
            "completed_lessons",
            "total_lessons",
            "completion_percentage",
        ):
            assert row[field] == detail[field], (key, field)
    assert rows[classroom.enrollments["alice"]]["completion_percentage"] == 33.33
    assert rows[classroom.enrollments["bob"]]["is_completed"] is True


async def test_roster_orderings_break_ties_by_id(
    client: httpx.AsyncClient, classroom: Classroom
) -> None:
    e = classroom.enrollments
    owner, course = classroom.owner, classroom.course.id
    # enrolled in the order alice, bob, carol, dave
    newest_first = [e["dave"], e["carol"], e["bob"], e["alice"]]
    assert ids(await roster(client, owner, course)) == newest_first
    assert ids(await roster(client, owner, course, ordering="-enrolled_at")) == newest_first
    assert ids(await roster(client, owner, course, ordering="enrolled_at")) == newest_first[::-1]
    # carol and dave tie at 0%: by id, in the direction asked.
    assert ids(await roster(client, owner, course, ordering="completion_percentage")) == [
        e["carol"],
        e["dave"],
        e["alice"],
        e["bob"],
    ]
    assert ids(await roster(client, owner, course, ordering="-completion_percentage")) == [
        e["bob"],
        e["alice"],
        e["dave"],
        e["carol"],
    ]
    by_name = ids(await roster(client, owner, course, ordering="student_name"))
    assert by_name == [e["alice"], e["bob"], e["carol"], e["dave"]]
    assert ids(await roster(client, owner, course, ordering="-student_name")) == by_name[::-1]
    for bad in ("id", "student", "-", "enrolled_at,student_name"):
        assert_error_body(await roster(client, owner, course, ordering=bad), 400, "ordering")


async def test_roster_filters_combine_with_pagination(
    client: httpx.AsyncClient, classroom: Classroom
) -> None:
    e = classroom.enrollments
    owner, course = classroom.owner, classroom.course.id
    assert ids(await roster(client, owner, course, is_completed="true")) == [e["bob"]]
    assert set(ids(await roster(client, owner, course, is_completed="false"))) == {
        e["alice"],
        e["carol"],
        e["dave"],
    }
    assert_error_body(await roster(client, owner, course, is_completed="maybe"), 400)
    # Case-insensitive substring of the name: "CAROL" finds "Carol ...", "a" all but Bob.
    assert ids(await roster(client, owner, course, search="CAROL")) == [e["carol"]]
    assert set(ids(await roster(client, owner, course, search="a"))) == {
        e["alice"],
        e["carol"],
        e["dave"],
    }
    # LIKE wildcards are plain characters.
    assert ids(await roster(client, owner, course, search="%")) == []
    assert ids(await roster(client, owner, course, search="_")) == []
    page = await roster(
        client, owner, course, search="a", is_completed="false", ordering="student_name",
        page_size=2,
    )  # fmt: skip
    body = page.json()
    assert body["count"] == 3
    assert [row["id"] for row in body["results"]] == [e["alice"], e["carol"]]
    assert body["next"] is not None
    second = await client.get(body["next"], headers=owner.headers)
    assert ids(second) == [e["dave"]]
    assert_error_body(await roster(client, owner, course, page=3, page_size=2), 404)


async def test_statistics_of_a_course(client: httpx.AsyncClient, classroom: Classroom) -> None:
    response = await client.get(
        f"/api/courses/{classroom.course.id}/stats/", headers=classroom.owner.headers
    )
    assert response.status_code == 200, response.text
    lessons = classroom.course.lesson_ids
    assert response.json() == {
        "course": classroom.course.id,
        "enrollments": 4,
        "completed": 1,
        "in_progress": 3,
        "completion_rate": 25.0,
        # (33.33 + 100 + 0 + 0) / 4
        "average_completion_percentage": 33.33,
        "lessons": [
            {"lesson": lessons[0], "title": "Lesson 1", "order": 1, "completed": 2},
            {"lesson": lessons[1], "title": "Lesson 2", "order": 2, "completed": 1},
            {"lesson": lessons[2], "title": "Lesson 3", "order": 3, "completed": 1},
        ],
    }
    empty = await client.get(
        f"/api/courses/{classroom.draft.id}/stats/", headers=classroom.owner.headers
    )
    assert empty.json() == {
        "course": classroom.draft.id,
        "enrollments": 0,
        "completed": 0,
        "in_progress": 0,
        "completion_rate": 0.0,
        "average_completion_percentage": 0.0,
        "lessons": [
            {
                "lesson": classroom.draft.lesson_ids[0],
                "title": "Lesson 1",
                "order": 1,
                "completed": 0,
            }
        ],
    }


async def test_lessons_added_and_deleted_after_enrollments(client: httpx.AsyncClient) -> None:
    owner = await register_and_login(client, "Instructor")
    course = await published_course(client, owner, lessons=3)
    part = await register_and_login(client, "Student")
    done = await register_and_login(client, "Student")
    idle = await register_and_login(client, "Student")
    enrollments = {}
    for user, lessons in ((part, 1), (done, 3), (idle, 0)):
        enrollments[user.id] = (await enroll(client, user, course.id))["id"]
        await completed_lessons(client, user, enrollments[user.id], lessons)
    added = await client.post(
        "/api/lessons/",
        json={"course": course.id, "title": "Lesson 4", "content": "More", "order": 4},
        headers=owner.headers,
    )
    assert added.status_code == 201, added.text
    deleted = await client.delete(f"/api/lessons/{course.lesson_ids[1]}/", headers=owner.headers)
    assert deleted.status_code == 204

    # Nobody read anything since: the figures still count the course's current lessons
    # (1, 3 and 4) for open enrollments; the completed one is final.
    response = await roster(client, owner, course.id, ordering="-completion_percentage")
    rows = response.json()["results"]
    figures = [
        (r["completed_lessons"], r["total_lessons"], r["completion_percentage"]) for r in rows
    ]
    assert figures == [(3, 3, 100.0), (1, 3, 33.33), (0, 3, 0.0)]
    stats = (await client.get(f"/api/courses/{course.id}/stats/", headers=owner.headers)).json()
    assert stats["average_completion_percentage"] == 44.44  # (100 + 33.33 + 0) / 3
    assert stats["completion_rate"] == 33.33
    assert [(x["lesson"], x["order"], x["completed"]) for x in stats["lessons"]] == [
        (course.lesson_ids[0], 1, 2),
        (course.lesson_ids[2], 3, 1),
        (added.json()["id"], 4, 0),
    ]
    # And they are what each student's own detail says, before and after it reconciles.
    for user in (part, done, idle):
        detail = await enrollment_detail(client, user, enrollments[user.id])
        row = next(r for r in rows if r["id"] == enrollments[user.id])
        assert (row["completed_lessons"], row["total_lessons"]) == (
            detail["completed_lessons"],
            detail["total_lessons"],
        )
    again = await roster(client, owner, course.id, ordering="-completion_percentage")
    assert again.json()["results"] == rows


# --- over gRPC ---------------------------------------------------------------------------------


@pytest.fixture
async def learning(
    services: dict[str, str],
) -> AsyncIterator[learning_pb2_grpc.LearningServiceStub]:
    async with grpc.aio.insecure_channel(services["learning"]) as channel:
        yield learning_pb2_grpc.LearningServiceStub(channel)


def bearer(user: User) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {user.access}"),)


async def rpc_failure(call: Any) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return decode_rpc_error(caught.value)


async def test_grpc_roster_and_stats(
    learning: learning_pb2_grpc.LearningServiceStub, classroom: Classroom, student: User
) -> None:
    owner = bearer(classroom.owner)
    reply = await learning.ListCourseEnrollments(
        learning_pb2.ListCourseEnrollmentsRequest(course_id=classroom.course.id, is_completed=True),
        metadata=owner,
        timeout=10,
    )
    assert reply.total_count == 1
    [entry] = reply.entries
    assert entry.enrollment.id == classroom.enrollments["bob"]
    assert entry.summary.completion_percentage == 100.0
    stats = await learning.GetCourseStats(
        learning_pb2.GetCourseStatsRequest(course_id=classroom.course.id),
        metadata=owner,
        timeout=10,
    )
    assert (stats.enrollments, stats.completed, stats.in_progress) == (4, 1, 3)

    bad = await rpc_failure(
        learning.ListCourseEnrollments(
            learning_pb2.ListCourseEnrollmentsRequest(
                course_id=classroom.course.id, ordering="student"
            ),
            metadata=owner,
            timeout=10,
        )
    )
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "ordering" in bad.field_errors
    for request, call in (
        (learning_pb2.ListCourseEnrollmentsRequest, learning.ListCourseEnrollments),
        (learning_pb2.GetCourseStatsRequest, learning.GetCourseStats),
    ):
        unauthenticated = await rpc_failure(
            call(request(course_id=classroom.course.id), timeout=10)
        )
        assert unauthenticated.code == grpc.StatusCode.UNAUTHENTICATED
        denied = await rpc_failure(
            call(request(course_id=classroom.course.id), metadata=bearer(student), timeout=10)
        )
        assert denied.code == grpc.StatusCode.PERMISSION_DENIED
        missing = await rpc_failure(
            call(request(course_id=UNKNOWN_COURSE), metadata=owner, timeout=10)
        )
        assert missing.code == grpc.StatusCode.NOT_FOUND


# --- statements --------------------------------------------------------------------------------


async def test_statement_count_does_not_grow_with_page_or_enrollments(
    client: httpx.AsyncClient, classroom: Classroom, settings: Settings, services: dict[str, str]
) -> None:
    engine = create_engine(settings, "test-learning-roster")
    catalog = CatalogClient(services["catalog"], settings.grpc_client_timeout_s)
    views = CourseViews(session_factory(engine), catalog)
    small = await published_course(client, classroom.owner, lessons=5)
    lone = await register_and_login(client, "Student")
    await enroll(client, lone, small.id)
    counts: dict[str, list[int]] = {"roster": [], "stats": []}
    try:
        with acting_as(classroom.owner, settings) as caller:
            for course_id, page_size in (
                (small.id, 1),
                (classroom.course.id, 1),
                (classroom.course.id, 4),
            ):
                for ordering in ("", "completion_percentage", "-student_name"):
                    with counting_statements(engine) as counter:
                        await views.roster(
                            caller,
                            course_id,
                            page=1,
                            page_size=page_size,
                            is_completed=None,
                            search="",
                            ordering=ordering,
                        )
                    counts["roster"].append(counter.count)
                with counting_statements(engine) as counter:
                    await views.stats(caller, course_id)
                counts["stats"].append(counter.count)
    finally:
        await catalog.close()
        await engine.dispose()
    assert set(counts["roster"]) == {2}, counts  # count + page
    assert set(counts["stats"]) == {2}, counts  # totals + per-lesson funnel


async def test_catalog_get_own_course_keeps_the_access_rule(
    services: dict[str, str], client: httpx.AsyncClient, classroom: Classroom, student: User
) -> None:
    """The catalog RPC learning asks: the owner gets the course and its lessons; a draft of
    someone else is NOT_FOUND, their published course PERMISSION_DENIED; no token UNAUTHENTICATED."""
    other = await register_and_login(client, "Instructor")
    async with grpc.aio.insecure_channel(services["catalog"]) as channel:
        catalog = catalog_pb2_grpc.CatalogServiceStub(channel)

        def ask(course_id: int, user: User | None) -> Any:
            return catalog.GetOwnCourse(
                catalog_pb2.GetOwnCourseRequest(course_id=course_id),
                metadata=bearer(user) if user else (),
                timeout=10,
            )

        reply = await ask(classroom.course.id, classroom.owner)
        assert [lesson.id for lesson in reply.course.lessons] == classroom.course.lesson_ids
        assert (await ask(classroom.draft.id, classroom.owner)).course.id == classroom.draft.id
        for course_id, user, code in (
            (classroom.draft.id, other, grpc.StatusCode.NOT_FOUND),
            (classroom.course.id, other, grpc.StatusCode.PERMISSION_DENIED),
            (classroom.course.id, student, grpc.StatusCode.PERMISSION_DENIED),
            (UNKNOWN_COURSE, classroom.owner, grpc.StatusCode.NOT_FOUND),
            (classroom.course.id, None, grpc.StatusCode.UNAUTHENTICATED),
        ):
            assert (await rpc_failure(ask(course_id, user))).code == code
