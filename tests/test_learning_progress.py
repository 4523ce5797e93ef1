"""Progress rows of CONTRACT.md: the order rule, one-way completion, figures and completion."""

from __future__ import annotations

import httpx
import pytest
from redis.asyncio import Redis

from tests.conftest import User, assert_error_body, register_and_login
from tests.learning_support import (
    complete,
    enroll,
    enrollment_detail,
    outbox_rows,
    progress_rows,
    published_course,
    published_events,
)

PROGRESS_FIELDS = {
    "id",
    "enrollment",
    "lesson",
    "lesson_title",
    "completed",
    "completed_at",
    "created_at",
    "updated_at",
}
ORDER_MESSAGE = "You must complete lesson 1 (Lesson 1) before completing this lesson."


async def started(
    client: httpx.AsyncClient, student: User, instructor: User, lessons: int = 3
) -> tuple[dict, list[dict]]:
    course = await published_course(client, instructor, lessons=lessons)
    enrollment = await enroll(client, student, course.id)
    return enrollment, await progress_rows(client, student, enrollment["id"])


async def test_second_before_first_is_400_on_lesson_via_patch_and_complete(
    client: httpx.AsyncClient, student: User, instructor: User
) -> None:
    _, rows = await started(client, student, instructor)
    patched = await client.patch(
        f"/api/progress/{rows[1]['id']}/", json={"completed": True}, headers=student.headers
    )
    assert assert_error_body(patched, 400, "lesson")["errors"]["lesson"] == [ORDER_MESSAGE]
    completed = await complete(client, student, rows[2]["id"])
    assert assert_error_body(completed, 400, "lesson")["errors"]["lesson"] == [ORDER_MESSAGE]
    put = await client.put(
        f"/api/progress/{rows[1]['id']}/", json={"completed": True}, headers=student.headers
    )
    assert_error_body(put, 400, "lesson")
    # Nothing changed.
    assert not any(
        row["completed"] for row in await progress_rows(client, student, rows[0]["enrollment"])
    )


async def test_the_error_names_the_first_open_lesson(
    client: httpx.AsyncClient, student: User, instructor: User
) -> None:
    _, rows = await started(client, student, instructor, lessons=4)
    assert (await complete(client, student, rows[0]["id"])).status_code == 200
    response = await complete(client, student, rows[3]["id"])
    body = assert_error_body(response, 400, "lesson")
    assert body["errors"]["lesson"] == [
        "You must complete lesson 2 (Lesson 2) before completing this lesson."
    ]


async def test_completing_in_order_and_figures(
    client: httpx.AsyncClient, student: User, instructor: User
) -> None:
    enrollment, rows = await started(client, student, instructor)
    first = await complete(client, student, rows[0]["id"])
    assert first.status_code == 200, first.text
    body = first.json()
    assert set(body) == PROGRESS_FIELDS
    assert body["completed"] is True and body["completed_at"].endswith("Z")
    assert body["lesson"] == rows[0]["lesson"]

    detail = await enrollment_detail(client, student, enrollment["id"])
    assert (detail["total_lessons"], detail["completed_lessons"]) == (3, 1)
    assert detail["completion_percentage"] == 33.33
    assert detail["is_completed"] is False and detail["completed_at"] is None

    second = await client.patch(
        f"/api/progress/{rows[1]['id']}/", json={"completed": True}, headers=student.headers
    )
    assert second.status_code == 200, second.text
    assert second.json()["completed"] is True
    detail = await enrollment_detail(client, student, enrollment["id"])
    assert detail["completion_percentage"] == 66.67


async def test_completing_a_completed_lesson(
    client: httpx.AsyncClient, student: User, instructor: User
) -> None:
    _, rows = await started(client, student, instructor)
    first = await complete(client, student, rows[0]["id"])
    again = await complete(client, student, rows[0]["id"])
    assert again.status_code == 200, again.text
    assert again.json() == {"message": "Lesson is already completed"}
    # PUT/PATCH true again is an idempotent 200 with the unchanged row.
    put = await client.put(
        f"/api/progress/{rows[0]['id']}/", json={"completed": True}, headers=student.headers
    )
    assert put.status_code == 200, put.text
    assert put.json()["completed_at"] == first.json()["completed_at"]


async def test_completion_is_one_way(
    client: httpx.AsyncClient, student: User, instructor: User
) -> None:
    _, rows = await started(client, student, instructor)
    await complete(client, student, rows[0]["id"])
    for method in ("put", "patch"):
        response = await client.request(
            method,
            f"/api/progress/{rows[0]['id']}/",
            json={"completed": False},
            headers=student.headers,
        )
        assert_error_body(response, 400, "completed")
    # Not completing an open lesson changes nothing.
    untouched = await client.patch(
        f"/api/progress/{rows[1]['id']}/", json={"completed": False}, headers=student.headers
    )
    assert untouched.status_code == 200, untouched.text
    assert untouched.json()["completed"] is False
    row = (await client.get(f"/api/progress/{rows[0]['id']}/", headers=student.headers)).json()
    assert row["completed"] is True


async def test_finishing_the_course(
    client: httpx.AsyncClient, student: User, instructor: User, database_url: str, redis: Redis
) -> None:
    enrollment, rows = await started(client, student, instructor)
    for row in rows:
        response = await complete(client, student, row["id"])
        assert response.status_code == 200, response.text
    detail = await enrollment_detail(client, student, enrollment["id"])
    assert detail["is_completed"] is True
    assert detail["completed_at"] and detail["completed_at"].endswith("Z")
    assert (detail["total_lessons"], detail["completed_lessons"]) == (3, 3)
    assert detail["completion_percentage"] == 100
    listed = (await client.get("/api/enrollments/", headers=student.headers)).json()["results"]
    assert listed[0]["is_completed"] is True
    assert listed[0]["completed_at"] == detail["completed_at"]

    [outbox] = await outbox_rows(database_url, enrollment["id"])
    [event] = await published_events(redis, database_url, enrollment["id"])
    assert event.event_id == str(outbox["event_id"])
    assert event.student_id == student.id
    assert event.student_email == student.email
    assert event.student_full_name == student.full_name
    assert event.course_id == enrollment["course"]
    assert event.course_title == enrollment["course_title"]
    assert event.completed_at.ToJsonString().startswith(detail["completed_at"][:19])


async def test_progress_list_is_own_rows_and_filters(
    client: httpx.AsyncClient, instructor: User
) -> None:
    student = await register_and_login(client, "Student")
    stranger = await register_and_login(client, "Student")
    first, _ = await started(client, student, instructor, lessons=2)
    second, _ = await started(client, student, instructor, lessons=3)
    other, _ = await started(client, stranger, instructor, lessons=1)

    everything = await client.get("/api/progress/", headers=student.headers)
    assert everything.status_code == 200, everything.text
    body = everything.json()
    assert body["count"] == 5
    assert {row["enrollment"] for row in body["results"]} == {first["id"], second["id"]}

    filtered = await client.get(
        "/api/progress/", params={"enrollment": second["id"]}, headers=student.headers
    )
    assert filtered.json()["count"] == 3
    paged = await client.get(
        "/api/progress/", params={"page_size": 2, "page": 3}, headers=student.headers
    )
    assert paged.status_code == 200 and len(paged.json()["results"]) == 1
    assert_error_body(
        await client.get(
            "/api/progress/", params={"page": 4, "page_size": 2}, headers=student.headers
        ),
        404,
    )
    # Another student's enrollment is not a filter you may use.
    assert_error_body(
        await client.get(
            "/api/progress/", params={"enrollment": other["id"]}, headers=student.headers
        ),
        404,
    )


@pytest.mark.parametrize("value", ["abc", "0", "-1", "1.5", str(2**64)])
async def test_bad_enrollment_filter_is_400(
    client: httpx.AsyncClient, student: User, value: str
) -> None:
    response = await client.get(
        "/api/progress/", params={"enrollment": value}, headers=student.headers
    )
    assert_error_body(response, 400, "enrollment")


async def test_other_students_progress_is_404(
    client: httpx.AsyncClient, student: User, instructor: User
) -> None:
    _, rows = await started(client, student, instructor)
    stranger = await register_and_login(client, "Student")
    target = f"/api/progress/{rows[0]['id']}/"
    assert_error_body(await client.get(target, headers=stranger.headers), 404)
    assert_error_body(
        await client.patch(target, json={"completed": True}, headers=stranger.headers), 404
    )
    assert_error_body(
        await client.put(target, json={"completed": True}, headers=stranger.headers), 404
    )
    assert_error_body(await complete(client, stranger, rows[0]["id"]), 404)
    # And it is untouched.
    assert (await client.get(target, headers=student.headers)).json()["completed"] is False


async def test_unknown_progress_ids(client: httpx.AsyncClient, student: User) -> None:
    for path in ("/api/progress/999999999/", "/api/progress/abc/", "/api/progress/0/"):
        assert_error_body(await client.get(path, headers=student.headers), 404)
    assert_error_body(await complete(client, student, 999999999), 404)
    assert_error_body(
        await client.post("/api/progress/abc/complete/", headers=student.headers), 404
    )


@pytest.mark.parametrize(
    ("method", "body", "field"),
    [
        ("put", {}, "completed"),
        ("put", {"completed": "yes"}, "completed"),
        ("put", {"completed": 1}, "completed"),
        ("put", {"completed": None}, "completed"),
        ("patch", {"completed": "true"}, "completed"),
        ("patch", {"completd": True}, "completd"),
        ("patch", {"lesson": 1}, "lesson"),
        ("patch", {"enrollment": 1}, "enrollment"),
        ("put", {"completed": True, "id": 1}, "id"),
    ],
)
async def test_bad_update_bodies_are_400(
    client: httpx.AsyncClient,
    student: User,
    instructor: User,
    method: str,
    body: dict,
    field: str,
) -> None:
    _, rows = await started(client, student, instructor, lessons=1)
    response = await client.request(
        method, f"/api/progress/{rows[0]['id']}/", json=body, headers=student.headers
    )
    assert_error_body(response, 400, field)
    row = (await client.get(f"/api/progress/{rows[0]['id']}/", headers=student.headers)).json()
    assert row["completed"] is False


async def test_clients_put_what_they_get(
    client: httpx.AsyncClient, student: User, instructor: User
) -> None:
    _, rows = await started(client, student, instructor, lessons=2)
    row = rows[0]
    response = await client.put(
        f"/api/progress/{row['id']}/", json={**row, "completed": True}, headers=student.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["completed"] is True
    # An empty PATCH changes nothing.
    empty = await client.patch(f"/api/progress/{rows[1]['id']}/", json={}, headers=student.headers)
    assert empty.status_code == 200 and empty.json() == rows[1]
    form = await client.patch(
        f"/api/progress/{rows[1]['id']}/", data={"completed": "true"}, headers=student.headers
    )
    assert form.status_code == 200, form.text
    assert form.json()["completed"] is True


async def test_instructors_get_403(client: httpx.AsyncClient, instructor: User) -> None:
    headers = instructor.headers
    assert_error_body(await client.get("/api/progress/", headers=headers), 403)
    assert_error_body(await client.get("/api/progress/1/", headers=headers), 403)
    assert_error_body(
        await client.patch("/api/progress/1/", json={"completed": True}, headers=headers), 403
    )
    assert_error_body(
        await client.put("/api/progress/1/", json={"completed": True}, headers=headers), 403
    )
    assert_error_body(await client.post("/api/progress/1/complete/", headers=headers), 403)
    assert_error_body(await client.get("/api/progress/"), 401)
