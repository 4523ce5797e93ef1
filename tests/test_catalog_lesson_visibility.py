"""One lesson-visibility rule, the same over REST and direct gRPC (services/catalog/domain.py):

- by id, a lesson is readable exactly when its course is: its instructor in any status, any
  other signed-in user once published (as the course nests it anyway);
- lists are filtered views of that: instructors list their own courses' lessons; students list
  lessons of the courses they are enrolled in (the gateway passes those as `course_ids`; over
  gRPC the caller's own filter narrows the published lessons).
Checked for the owner, another instructor, an enrolled and a not-enrolled student, on a draft
and on a published course.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from courseplatform.catalog.v1 import catalog_pb2, catalog_pb2_grpc

from tests.conftest import User, register_and_login
from tests.learning_support import Course, enroll, published_course


@pytest.fixture
async def catalog(services: dict[str, str]) -> AsyncIterator[catalog_pb2_grpc.CatalogServiceStub]:
    async with grpc.aio.insecure_channel(services["catalog"]) as channel:
        yield catalog_pb2_grpc.CatalogServiceStub(channel)


def auth(user: User) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {user.access}"),)


async def rest_read(client: httpx.AsyncClient, user: User, lesson_id: int) -> tuple[int, dict]:
    response = await client.get(f"/api/lessons/{lesson_id}/", headers=user.headers)
    return response.status_code, response.json()


async def grpc_read(
    catalog: catalog_pb2_grpc.CatalogServiceStub, user: User, lesson_id: int
) -> tuple[grpc.StatusCode, catalog_pb2.Lesson | None]:
    try:
        reply = await catalog.GetLesson(
            catalog_pb2.GetLessonRequest(lesson_id=lesson_id), metadata=auth(user)
        )
    except grpc.aio.AioRpcError as error:
        return error.code(), None
    return grpc.StatusCode.OK, reply.lesson


async def rest_list(client: httpx.AsyncClient, user: User, course_id: int) -> list[int]:
    response = await client.get("/api/lessons/", params={"course": course_id}, headers=user.headers)
    assert response.status_code == 200, response.text
    return [lesson["id"] for lesson in response.json()["results"]]


async def grpc_list(
    catalog: catalog_pb2_grpc.CatalogServiceStub, user: User, **query: object
) -> list[int]:
    reply = await catalog.ListLessons(catalog_pb2.ListLessonsRequest(**query), metadata=auth(user))
    return [lesson.id for lesson in reply.lessons]


async def test_lesson_visibility_is_one_rule_on_both_apis(
    client: httpx.AsyncClient, catalog: catalog_pb2_grpc.CatalogServiceStub
) -> None:
    owner = await register_and_login(client, "Instructor")
    other = await register_and_login(client, "Instructor")
    enrolled = await register_and_login(client, "Student")
    outsider = await register_and_login(client, "Student")
    draft: Course = await published_course(client, owner, lessons=1, publish=False)
    public: Course = await published_course(client, owner, lessons=2)
    await enroll(client, enrolled, public.id)
    everyone = {"owner": owner, "other": other, "enrolled": enrolled, "outsider": outsider}

    # By id: the course's visibility, identical on both APIs, same content.
    for name, user in everyone.items():
        status, body = await rest_read(client, user, draft.lesson_ids[0])
        code, _ = await grpc_read(catalog, user, draft.lesson_ids[0])
        expected = (
            (200, grpc.StatusCode.OK) if name == "owner" else (404, grpc.StatusCode.NOT_FOUND)
        )
        assert (status, code) == expected, name
        for lesson_id in public.lesson_ids:
            status, body = await rest_read(client, user, lesson_id)
            code, lesson = await grpc_read(catalog, user, lesson_id)
            assert (status, code) == (200, grpc.StatusCode.OK), name
            assert lesson is not None
            assert (body["id"], body["course"], body["content"]) == (
                lesson.id,
                lesson.course_id,
                lesson.content,
            )

    # Lists: the contract's filtered views over REST.
    assert await rest_list(client, owner, public.id) == public.lesson_ids
    assert await rest_list(client, owner, draft.id) == draft.lesson_ids
    assert await rest_list(client, other, public.id) == []
    assert await rest_list(client, enrolled, public.id) == public.lesson_ids
    assert await rest_list(client, outsider, public.id) == []
    assert await rest_list(client, outsider, draft.id) == []

    # Over gRPC the same scopes: instructors their own courses, whatever filter they send ...
    assert await grpc_list(catalog, owner, course_id=public.id) == public.lesson_ids
    assert await grpc_list(catalog, other, course_id=public.id) == []
    assert await grpc_list(catalog, other, course_ids=[public.id, draft.id]) == []
    # ... students the published lessons their filter names (REST names the enrolled courses),
    # never a draft's.
    assert await grpc_list(catalog, enrolled, course_ids=[public.id]) == public.lesson_ids
    for student in (enrolled, outsider):
        assert await grpc_list(catalog, student, course_id=draft.id) == []
        listed = await grpc_list(catalog, student, course_ids=[public.id, draft.id])
        assert listed == public.lesson_ids
        # Everything a list shows is readable by id by the same caller.
        for lesson_id in listed:
            assert (await rest_read(client, student, lesson_id))[0] == 200
