"""Withdrawing from a course and enrolling again (issue #13), and where to resume (next_lesson):
through the gateway and over gRPC, with the races decided by the database and the completion
mail sent once however often a completed student leaves and comes back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from courseplatform.learning.v1 import learning_pb2, learning_pb2_grpc
from redis.asyncio import Redis

from libs.grpc_errors import decode_rpc_error
from libs.settings import Settings
from services.notifier.app import NotifierApp
from tests.conftest import User, assert_error_body, register_and_login
from tests.learning_support import (
    complete,
    enroll,
    enrollment_detail,
    outbox_rows,
    progress_rows,
    published_course,
    published_events,
    query,
)
from tests.notifier_support import MailCatcher, eventually, fast_settings, running_notifier


async def assert_counts_match_rows(database_url: str, course_id: int) -> None:
    """The statistics' running counts equal a recount from the enrollment and progress rows."""
    kept = await query(
        database_url,
        "SELECT enrollments, completed FROM learning.course_counts WHERE course_id = %s",
        course_id,
    )
    recount = await query(
        database_url,
        "SELECT count(*) AS enrollments, count(completed_at) AS completed"
        " FROM learning.enrollments WHERE course_id = %s AND withdrawn_at IS NULL",
        course_id,
    )
    assert (kept or [{"enrollments": 0, "completed": 0}]) == recount
    kept_lessons = await query(
        database_url,
        "SELECT lesson_id, completed, completed_in_completed FROM learning.course_lesson_counts"
        " WHERE course_id = %s AND completed <> 0 ORDER BY lesson_id",
        course_id,
    )
    recount_lessons = await query(
        database_url,
        "SELECT p.lesson_id, count(*) AS completed,"
        " count(*) FILTER (WHERE e.completed_at IS NOT NULL) AS completed_in_completed"
        " FROM learning.lesson_progress p JOIN learning.enrollments e ON e.id = p.enrollment_id"
        " WHERE e.course_id = %s AND e.withdrawn_at IS NULL AND p.completed"
        " GROUP BY p.lesson_id ORDER BY p.lesson_id",
        course_id,
    )
    assert kept_lessons == recount_lessons


async def withdraw(client: httpx.AsyncClient, user: User, enrollment_id: int) -> httpx.Response:
    return await client.delete(f"/api/enrollments/{enrollment_id}/", headers=user.headers)


async def test_withdrawn_enrollment_leaves_every_view(
    client: httpx.AsyncClient, student: User, instructor: User
) -> None:
    course = await published_course(client, instructor, lessons=3)
    other_course = await published_course(client, instructor, lessons=1)
    enrollment = await enroll(client, student, course.id)
    kept = await enroll(client, student, other_course.id)
    rows = await progress_rows(client, student, enrollment["id"])
    assert (await complete(client, student, rows[0]["id"])).status_code == 200

    response = await withdraw(client, student, enrollment["id"])
    assert response.status_code == 204, response.text
    assert response.content == b""

    mine = await client.get("/api/enrollments/", headers=student.headers)
    assert [e["id"] for e in mine.json()["results"]] == [kept["id"]]
    assert_error_body(
        await client.get(f"/api/enrollments/{enrollment['id']}/", headers=student.headers), 404
    )
    progress = await client.get(
        "/api/progress/", params={"page_size": 100}, headers=student.headers
    )
    assert {row["enrollment"] for row in progress.json()["results"]} == {kept["id"]}
    assert_error_body(
        await client.get(
            "/api/progress/", params={"enrollment": enrollment["id"]}, headers=student.headers
        ),
        404,
    )
    for row in rows:
        assert_error_body(
            await client.get(f"/api/progress/{row['id']}/", headers=student.headers), 404
        )
    # Not enrolled any more: the course's lessons are no longer listed for the student, and
    # its lessons cannot be completed.
    lessons = await client.get(
        "/api/lessons/", params={"course": course.id}, headers=student.headers
    )
    assert lessons.json()["count"] == 0
    assert_error_body(await complete(client, student, rows[1]["id"]), 404)
    # Gone from the roster and the statistics.
    roster = await client.get(f"/api/courses/{course.id}/enrollments/", headers=instructor.headers)
    assert roster.json()["count"] == 0
    stats = await client.get(f"/api/courses/{course.id}/stats/", headers=instructor.headers)
    assert stats.json()["enrollments"] == 0
    assert [lesson["completed"] for lesson in stats.json()["lessons"]] == [0, 0, 0]
    # Twice is not found.
    assert_error_body(await withdraw(client, student, enrollment["id"]), 404)


async def test_who_may_withdraw(client: httpx.AsyncClient, student: User, instructor: User) -> None:
    course = await published_course(client, instructor, lessons=1)
    enrollment = await enroll(client, student, course.id)
    other = await register_and_login(client, "Student")
    assert_error_body(await withdraw(client, other, enrollment["id"]), 404)
    assert_error_body(await withdraw(client, instructor, enrollment["id"]), 403)
    assert_error_body(await withdraw(client, student, 2**62), 404)
    assert_error_body(await client.delete(f"/api/enrollments/{enrollment['id']}/"), 401)
    assert (await enrollment_detail(client, student, enrollment["id"]))["id"] == enrollment["id"]


async def test_enrolling_again_returns_the_same_enrollment_with_its_progress(
    client: httpx.AsyncClient, student: User, instructor: User
) -> None:
    course = await published_course(client, instructor, lessons=3)
    enrollment = await enroll(client, student, course.id)
    rows = await progress_rows(client, student, enrollment["id"])
    assert (await complete(client, student, rows[0]["id"])).status_code == 200
    assert (await withdraw(client, student, enrollment["id"])).status_code == 204
    # A lesson added while the student was away counts once they are back.
    added = await client.post(
        "/api/lessons/",
        json={"course": course.id, "title": "Lesson 4", "content": "More", "order": 4},
        headers=instructor.headers,
    )
    assert added.status_code == 201, added.text

    again = await enroll(client, student, course.id)
    assert again["id"] == enrollment["id"]
    assert again["enrolled_at"] == enrollment["enrolled_at"]
    detail = await enrollment_detail(client, student, enrollment["id"])
    assert (detail["completed_lessons"], detail["total_lessons"]) == (1, 4)
    assert detail["completion_percentage"] == 25.0
    after = await progress_rows(client, student, enrollment["id"])
    assert [row["id"] for row in after[:3]] == [row["id"] for row in rows]
    assert [row["completed"] for row in after] == [True, False, False, False]
    assert (
        after[0]["completed_at"]
        == (await progress_rows(client, student, enrollment["id"]))[0]["completed_at"]
    )
    # Back in every view; enrolling a third time is "already enrolled".
    mine = await client.get("/api/enrollments/", headers=student.headers)
    assert enrollment["id"] in [e["id"] for e in mine.json()["results"]]
    roster = await client.get(f"/api/courses/{course.id}/enrollments/", headers=instructor.headers)
    assert [row["id"] for row in roster.json()["results"]] == [enrollment["id"]]
    duplicate = await client.post(
        "/api/enrollments/", json={"course": course.id}, headers=student.headers
    )
    assert_error_body(duplicate, 400, "course")


async def test_next_lesson_is_the_first_open_lesson_in_order(
    client: httpx.AsyncClient, student: User, instructor: User
) -> None:
    course = await published_course(client, instructor, lessons=3)
    enrollment = await enroll(client, student, course.id)
    rows = {row["lesson"]: row for row in await progress_rows(client, student, enrollment["id"])}
    first, second, third = (rows[lesson_id] for lesson_id in course.lesson_ids)

    detail = await enrollment_detail(client, student, enrollment["id"])
    assert detail["next_lesson"] == {
        "progress": first["id"],
        "lesson": course.lesson_ids[0],
        "title": "Lesson 1",
        "order": 1,
    }
    assert (await complete(client, student, first["id"])).status_code == 200
    assert (await enrollment_detail(client, student, enrollment["id"]))["next_lesson"][
        "progress"
    ] == second["id"]
    # The next lesson deleted: resume at the one after it. Ready for .../complete/.
    deleted = await client.delete(
        f"/api/lessons/{course.lesson_ids[1]}/", headers=instructor.headers
    )
    assert deleted.status_code == 204
    resume = (await enrollment_detail(client, student, enrollment["id"]))["next_lesson"]
    assert resume == {
        "progress": third["id"],
        "lesson": course.lesson_ids[2],
        "title": "Lesson 3",
        "order": 3,
    }
    assert (await complete(client, student, resume["progress"])).status_code == 200
    done = await enrollment_detail(client, student, enrollment["id"])
    assert done["is_completed"] is True
    assert done["next_lesson"] is None


async def test_grpc_withdraw(
    services: dict[str, str], client: httpx.AsyncClient, student: User, instructor: User
) -> None:
    course = await published_course(client, instructor, lessons=1)
    enrollment = await enroll(client, student, course.id)
    async with grpc.aio.insecure_channel(services["learning"]) as channel:
        learning = learning_pb2_grpc.LearningServiceStub(channel)
        request = learning_pb2.WithdrawEnrollmentRequest(enrollment_id=enrollment["id"])

        async def failure(metadata: Any) -> Any:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await learning.WithdrawEnrollment(request, metadata=metadata, timeout=10)
            return decode_rpc_error(caught.value).code

        assert await failure(()) == grpc.StatusCode.UNAUTHENTICATED
        as_instructor = (("authorization", f"Bearer {instructor.access}"),)
        assert await failure(as_instructor) == grpc.StatusCode.PERMISSION_DENIED
        as_student = (("authorization", f"Bearer {student.access}"),)
        await learning.WithdrawEnrollment(request, metadata=as_student, timeout=10)
        assert await failure(as_student) == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await learning.GetEnrollment(
                learning_pb2.GetEnrollmentRequest(enrollment_id=enrollment["id"]),
                metadata=as_student,
                timeout=10,
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        again = await learning.Enroll(
            learning_pb2.EnrollRequest(course_id=course.id), metadata=as_student, timeout=10
        )
        assert again.enrollment.id == enrollment["id"]
        detail = await learning.GetEnrollment(
            learning_pb2.GetEnrollmentRequest(enrollment_id=enrollment["id"]),
            metadata=as_student,
            timeout=10,
        )
        assert detail.HasField("next_lesson")
        assert detail.next_lesson.lesson_id == course.lesson_ids[0]


# --- a completed course: left and taken up again, mailed once ---------------------------------


@pytest.fixture
async def notifier(
    settings: Settings, services: dict[str, str], catcher: MailCatcher
) -> AsyncIterator[NotifierApp]:
    async with running_notifier(fast_settings(settings, catcher)) as running:
        yield running


async def test_completed_enrollment_withdrawn_and_back_is_mailed_once(
    client: httpx.AsyncClient,
    instructor: User,
    database_url: str,
    redis: Redis,
    catcher: MailCatcher,
    notifier: NotifierApp,
) -> None:
    student = await register_and_login(client, "Student", full_name=f"Ada {uuid.uuid4().hex[:6]}")
    course = await published_course(client, instructor, lessons=2)
    enrollment = await enroll(client, student, course.id)
    for row in await progress_rows(client, student, enrollment["id"]):
        assert (await complete(client, student, row["id"])).status_code == 200
    completed = await enrollment_detail(client, student, enrollment["id"])
    assert completed["is_completed"] is True
    await eventually(lambda: catcher.to(student.email), what="the completion mail")

    for _ in range(2):
        assert (await withdraw(client, student, enrollment["id"])).status_code == 204
        again = await enroll(client, student, course.id)
        assert again["id"] == enrollment["id"]
        assert again["completed_at"] == completed["completed_at"]
        assert again["is_completed"] is True
        detail = await enrollment_detail(client, student, enrollment["id"])
        assert detail["completed_at"] == completed["completed_at"]
        assert detail["completion_percentage"] == 100.0
        assert detail["next_lesson"] is None

    # One outbox row, one stream entry, one mail: nothing was completed a second time.
    [outbox] = await outbox_rows(database_url, enrollment["id"])
    events = await published_events(redis, database_url, enrollment["id"])
    assert [event.event_id for event in events] == [str(outbox["event_id"])]
    await asyncio.sleep(1.0)  # several relay polls and notifier reads
    assert len(catcher.to(student.email)) == 1


# --- races -------------------------------------------------------------------------------------


async def test_concurrent_withdraw_reenroll_and_complete_stay_consistent(
    client: httpx.AsyncClient, student: User, instructor: User, database_url: str
) -> None:
    course = await published_course(client, instructor, lessons=3)
    enrollment = await enroll(client, student, course.id)
    rows = await progress_rows(client, student, enrollment["id"])
    progress_ids = [row["id"] for row in rows]
    for round_ in range(6):
        target = progress_ids[min(round_ // 2, 2)]
        answers = await asyncio.gather(
            withdraw(client, student, enrollment["id"]),
            client.post("/api/enrollments/", json={"course": course.id}, headers=student.headers),
            complete(client, student, target),
            client.post("/api/enrollments/", json={"course": course.id}, headers=student.headers),
            withdraw(client, student, enrollment["id"]),
        )
        for answer in answers:
            # Each one either happened or was refused for the state it found; never a 500.
            assert answer.status_code in (200, 201, 204, 400, 404), answer.text
        for answer in (answers[1], answers[3]):
            if answer.status_code == 201:
                assert answer.json()["id"] == enrollment["id"]
            else:
                assert_error_body(answer, 400, "course")
        # Whatever the interleaving: end active, for the next round.
        back = await client.post(
            "/api/enrollments/", json={"course": course.id}, headers=student.headers
        )
        assert back.status_code in (201, 400), back.text

    stored = await query(
        database_url,
        "SELECT id, withdrawn_at, completed_at FROM learning.enrollments"
        " WHERE student_id = %s AND course_id = %s",
        student.id,
        course.id,
    )
    assert [row["id"] for row in stored] == [enrollment["id"]]
    assert stored[0]["withdrawn_at"] is None
    progress = await query(
        database_url,
        "SELECT lesson_id, completed, completed_at FROM learning.lesson_progress"
        " WHERE enrollment_id = %s ORDER BY lesson_order",
        enrollment["id"],
    )
    assert [row["lesson_id"] for row in progress] == course.lesson_ids
    # Lessons completed in order, whichever completions got through.
    done = [row["completed"] for row in progress]
    assert done == sorted(done, reverse=True)
    assert (stored[0]["completed_at"] is not None) == all(done)
    assert len(await outbox_rows(database_url, enrollment["id"])) == (1 if all(done) else 0)
    detail = await enrollment_detail(client, student, enrollment["id"])
    assert detail["completed_lessons"] == sum(done)
    await assert_counts_match_rows(database_url, course.id)


async def test_concurrent_withdrawals_and_reenrollments_of_a_completed_course(
    client: httpx.AsyncClient, student: User, instructor: User, database_url: str
) -> None:
    course = await published_course(client, instructor, lessons=1)
    enrollment = await enroll(client, student, course.id)
    [row] = await progress_rows(client, student, enrollment["id"])
    assert (await complete(client, student, row["id"])).status_code == 200
    completed_at = (await enrollment_detail(client, student, enrollment["id"]))["completed_at"]
    for _ in range(4):
        answers = await asyncio.gather(
            *(
                withdraw(client, student, enrollment["id"])
                if n % 2
                else client.post(
                    "/api/enrollments/", json={"course": course.id}, headers=student.headers
                )
                for n in range(8)
            )
        )
        assert all(a.status_code in (201, 204, 400, 404) for a in answers), [
            a.text for a in answers
        ]
        withdrawals = [a for a in answers[1::2] if a.status_code == 204]
        # Every successful withdrawal found the enrollment active: at most one more than the
        # re-enrollments that made it active again.
        reenrolled = [a for a in answers[0::2] if a.status_code == 201]
        assert len(withdrawals) <= len(reenrolled) + 1
    await client.post("/api/enrollments/", json={"course": course.id}, headers=student.headers)
    detail = await enrollment_detail(client, student, enrollment["id"])
    assert detail["completed_at"] == completed_at
    assert len(await outbox_rows(database_url, enrollment["id"])) == 1
    await assert_counts_match_rows(database_url, course.id)


async def test_counts_follow_many_students_racing_in_one_course(
    client: httpx.AsyncClient, instructor: User, database_url: str
) -> None:
    """Students of one course completing, withdrawing and coming back at once: the running
    counts behind the statistics end equal to a recount (and nothing deadlocks)."""
    course = await published_course(client, instructor, lessons=3)
    students = [await register_and_login(client, "Student") for _ in range(4)]
    enrollments = [await enroll(client, user, course.id) for user in students]
    rows = [
        await progress_rows(client, user, e["id"])
        for user, e in zip(students, enrollments, strict=True)
    ]

    async def journey(
        user: User, enrollment: dict[str, Any], progress: list[dict[str, Any]]
    ) -> None:
        for step, row in enumerate(progress):
            await complete(client, user, row["id"])
            if step % 2 == user.id % 2:
                await withdraw(client, user, enrollment["id"])
                await client.post(
                    "/api/enrollments/", json={"course": course.id}, headers=user.headers
                )

    await asyncio.gather(
        *(journey(u, e, r) for u, e, r in zip(students, enrollments, rows, strict=True))
    )
    await withdraw(client, students[0], enrollments[0]["id"])
    await assert_counts_match_rows(database_url, course.id)
    stats = (
        await client.get(f"/api/courses/{course.id}/stats/", headers=instructor.headers)
    ).json()
    assert (stats["enrollments"], stats["completed"]) == (3, 3)
    assert [lesson["completed"] for lesson in stats["lessons"]] == [3, 3, 3]
