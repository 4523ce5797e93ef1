"""The gateway's cache of published courses, against the suite's real catalog, Redis stream and
a real uvicorn gateway: validators and 304s, who is served from the shared cache, and every
kind of change invalidating it through the CourseChanged events.

Changes are made over gRPC straight to the catalog, not through this gateway, so the only way
the gateway can learn of them is the event stream (a write through a gateway also drops its
own entry at once; that is tested separately). The gateway here keeps entries for 5 minutes,
so the age backstop cannot be what makes a change visible within the bound.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from courseplatform.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from google.protobuf.field_mask_pb2 import FieldMask

from libs.settings import Settings
from tests.cache_support import read_course, until_cached
from tests.conftest import User, register_and_login, serve_asgi
from tests.learning_support import Course, published_course

# After a change is acknowledged, no reader sees the old representation for longer than this.
BOUND_S = 1.0


@pytest.fixture(scope="module")
async def http(settings: Settings, services: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    from gateway.app import create_app
    from gateway.serving import uvicorn_options

    long_lived = settings.model_copy(update={"course_cache_max_age_s": 300.0})
    async with (
        serve_asgi(create_app(long_lived), **uvicorn_options()) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield client


@pytest.fixture(scope="module")
async def catalog(services: dict[str, str]) -> AsyncIterator[catalog_pb2_grpc.CatalogServiceStub]:
    async with grpc.aio.insecure_channel(services["catalog"]) as channel:
        yield catalog_pb2_grpc.CatalogServiceStub(channel)


def auth(user: User) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {user.access}"),)


async def seen_within_bound(
    http: httpx.AsyncClient, user: User, course_id: int, fresh: object, what: str
) -> float:
    """Reads until `fresh(read)` holds; fails when an old answer is still served after the
    bound. Returns how long it took."""
    assert callable(fresh)
    started = time.monotonic()
    while True:
        read = await read_course(http, user, course_id)
        if fresh(read):
            return time.monotonic() - started
        assert read.sent_at - started <= BOUND_S, f"{what}: still {read} after {BOUND_S} s"


async def test_a_student_read_is_shared_with_validators_and_an_instructor_never_is(
    http: httpx.AsyncClient, instructor: User, student: User
) -> None:
    course = await published_course(http, instructor)
    cached = await until_cached(http, student, course.id)
    response = await http.get(f"/api/courses/{course.id}/", headers=student.headers)
    assert response.headers["x-cache"] == "HIT"
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "private, no-cache"
    body = response.json()
    assert body["id"] == course.id and body["title"] == course.title
    assert [lesson["id"] for lesson in body["lessons"]] == course.lesson_ids
    assert cached.etag is not None and cached.etag.startswith(f'"c{course.id}-v')
    assert response.headers["etag"] == cached.etag
    assert response.headers["last-modified"].endswith(" GMT")

    head = await http.head(f"/api/courses/{course.id}/", headers=student.headers)
    assert (head.status_code, head.content, head.headers["etag"]) == (200, b"", cached.etag)

    other_student = await register_and_login(http, "Student")
    assert (await read_course(http, other_student, course.id)).source == "HIT"
    # Instructors (the owner included) always get the catalog's answer, with the same tag.
    other_instructor = await register_and_login(http, "Instructor")
    for user in (instructor, other_instructor, instructor):
        read = await read_course(http, user, course.id)
        assert (read.status, read.source, read.etag) == (200, "BYPASS", cached.etag)


@pytest.mark.parametrize("as_owner", [False, True], ids=["cached", "uncached"])
async def test_if_none_match(
    http: httpx.AsyncClient, instructor: User, student: User, as_owner: bool
) -> None:
    course = await published_course(http, instructor, lessons=1)
    reader = instructor if as_owner else student
    first = await until_cached(http, student, course.id)
    tag = first.etag
    assert tag is not None
    url = f"/api/courses/{course.id}/"
    full = await http.get(url, headers=reader.headers)

    for header in (tag, f"W/{tag}", f'"c{course.id}-v0", {tag}', "*"):
        answer = await http.get(url, headers={**reader.headers, "If-None-Match": header})
        assert answer.status_code == 304, (header, answer.text)
        assert answer.content == b""
        assert answer.headers["etag"] == tag
        assert answer.headers["x-cache"] == ("BYPASS" if as_owner else "HIT")

    for header in (f'"c{course.id}-v0"', f'W/"c{course.id + 1}-v1"', tag.strip('"')):
        answer = await http.get(url, headers={**reader.headers, "If-None-Match": header})
        assert answer.status_code == 200, header
        assert answer.content == full.content
        assert answer.headers["etag"] == tag


async def test_if_none_match_on_a_course_not_visible_is_still_404(
    http: httpx.AsyncClient, instructor: User, student: User
) -> None:
    draft = await published_course(http, instructor, lessons=0, publish=False)
    answer = await http.get(
        f"/api/courses/{draft.id}/", headers={**student.headers, "If-None-Match": "*"}
    )
    assert answer.status_code == 404
    assert "etag" not in answer.headers


async def test_a_draft_is_never_served_to_another_user(
    http: httpx.AsyncClient, instructor: User, student: User
) -> None:
    draft = await published_course(http, instructor, publish=False)
    other_instructor = await register_and_login(http, "Instructor")
    for _ in range(3):
        own = await read_course(http, instructor, draft.id)
        assert (own.status, own.source) == (200, "BYPASS")
        assert own.etag is not None
        assert (await read_course(http, student, draft.id)).status == 404
        assert (await read_course(http, other_instructor, draft.id)).status == 404
        listed = await http.get("/api/courses/?page_size=100", headers=student.headers)
        assert draft.id not in [course["id"] for course in listed.json()["results"]]


async def cached_course(http: httpx.AsyncClient, instructor: User, student: User) -> Course:
    course = await published_course(http, instructor, lessons=2)
    await until_cached(http, student, course.id)
    return course


async def test_a_course_change_published_to_the_stream_invalidates(
    http: httpx.AsyncClient,
    catalog: catalog_pb2_grpc.CatalogServiceStub,
    instructor: User,
    student: User,
) -> None:
    course = await cached_course(http, instructor, student)
    await catalog.UpdateCourse(
        catalog_pb2.UpdateCourseRequest(
            course_id=course.id, title="Renamed over gRPC", update_mask=FieldMask(paths=["title"])
        ),
        metadata=auth(instructor),
    )
    took = await seen_within_bound(
        http, student, course.id, lambda read: read.title == "Renamed over gRPC", "update"
    )
    print(f"update visible after {took * 1000:.0f} ms")
    assert (await until_cached(http, student, course.id)).title == "Renamed over gRPC"


async def test_lesson_changes_invalidate(
    http: httpx.AsyncClient,
    catalog: catalog_pb2_grpc.CatalogServiceStub,
    instructor: User,
    student: User,
) -> None:
    course = await cached_course(http, instructor, student)

    async def lessons() -> list[tuple[int, str]]:
        body = (await http.get(f"/api/courses/{course.id}/", headers=student.headers)).json()
        return [(lesson["id"], lesson["title"]) for lesson in body["lessons"]]

    created = await catalog.CreateLesson(
        catalog_pb2.CreateLessonRequest(
            course_id=course.id,
            lesson=catalog_pb2.NewLesson(title="Added", content="new", order=3),
        ),
        metadata=auth(instructor),
    )
    new_id = created.lesson.id
    before = (await read_course(http, student, course.id)).etag
    await seen_within_bound(
        http, student, course.id, lambda read: read.etag != before, "lesson created"
    )
    assert (new_id, "Added") in await lessons()

    await until_cached(http, student, course.id)
    before = (await read_course(http, student, course.id)).etag
    await catalog.UpdateLesson(
        catalog_pb2.UpdateLessonRequest(
            lesson_id=new_id, title="Edited", update_mask=FieldMask(paths=["title"])
        ),
        metadata=auth(instructor),
    )
    await seen_within_bound(
        http, student, course.id, lambda read: read.etag != before, "lesson updated"
    )
    assert (new_id, "Edited") in await lessons()

    await until_cached(http, student, course.id)
    before = (await read_course(http, student, course.id)).etag
    await catalog.DeleteLesson(
        catalog_pb2.DeleteLessonRequest(lesson_id=new_id), metadata=auth(instructor)
    )
    await seen_within_bound(
        http, student, course.id, lambda read: read.etag != before, "lesson deleted"
    )
    assert [lesson_id for lesson_id, _ in await lessons()] == course.lesson_ids


async def test_a_deleted_course_stops_being_served(
    http: httpx.AsyncClient,
    catalog: catalog_pb2_grpc.CatalogServiceStub,
    instructor: User,
    student: User,
) -> None:
    course = await cached_course(http, instructor, student)
    await catalog.DeleteCourse(
        catalog_pb2.DeleteCourseRequest(course_id=course.id), metadata=auth(instructor)
    )
    await seen_within_bound(http, student, course.id, lambda read: read.status == 404, "delete")


async def test_a_write_through_the_gateway_is_visible_there_at_once(
    http: httpx.AsyncClient, instructor: User, student: User
) -> None:
    course = await cached_course(http, instructor, student)
    for revision in range(3):
        title = f"Revision {revision}"
        patched = await http.patch(
            f"/api/courses/{course.id}/", json={"title": title}, headers=instructor.headers
        )
        assert patched.status_code == 200
        # No wait at all: this gateway dropped its entry before the writer heard back.
        read = await read_course(http, student, course.id)
        assert (read.title, read.etag) == (title, patched.headers["etag"])


async def page_ids(http: httpx.AsyncClient, student: User, **headers: str) -> httpx.Response:
    return await http.get("/api/courses/?page_size=5", headers={**student.headers, **headers})


async def test_student_list_pages_are_shared_validated_and_invalidated(
    http: httpx.AsyncClient,
    catalog: catalog_pb2_grpc.CatalogServiceStub,
    instructor: User,
    student: User,
) -> None:
    await published_course(http, instructor, lessons=1)
    deadline = time.monotonic() + 20
    while (first := await page_ids(http, student)).headers["x-cache"] != "HIT":
        assert time.monotonic() < deadline, "list page never served from the cache"
        await asyncio.sleep(0.05)
    body = first.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert len(body["results"]) == min(5, body["count"]) and body["previous"] is None
    assert (body["next"] is not None) == (body["count"] > 5)
    tag = first.headers["etag"]
    again = await page_ids(http, student, **{"If-None-Match": tag})
    assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", tag)
    # The page is the catalog's own answer: an instructor's list is never this one.
    own = await http.get("/api/courses/?page_size=5", headers=instructor.headers)
    assert own.headers["x-cache"] == "BYPASS"

    # A course published over gRPC comes first on the list (newest first).
    created = await catalog.CreateCourse(
        catalog_pb2.CreateCourseRequest(title="Newest", short_description="d"),
        metadata=auth(instructor),
    )
    await catalog.PublishCourse(
        catalog_pb2.PublishCourseRequest(course_id=created.course.id), metadata=auth(instructor)
    )
    started = time.monotonic()
    while True:
        sent = time.monotonic()
        page = await page_ids(http, student, **{"If-None-Match": tag})
        if page.status_code == 200 and page.json()["results"][0]["id"] == created.course.id:
            break
        assert sent - started <= BOUND_S, "the old page is still served"
    assert page.headers["etag"] != tag
    assert page.json()["count"] == body["count"] + 1
