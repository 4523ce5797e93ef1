"""Searching and ordering the course list (issue #13): PostgreSQL full-text search with stemming
and relevance, orderings with ties, one instructor's courses, all within what the caller sees
and combined with pagination; and the search's plan at 3,000 courses uses the GIN index."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.catalog import store
from services.catalog.domain import CourseQuery, ListScope
from tests.conftest import User, assert_error_body, register_and_login

PLAN_COURSES = 3000


def word() -> str:
    """A made-up word no other test's course holds (letters only, so it stays one token)."""
    return "zq" + "".join(chr(ord("a") + int(c, 16) % 26) for c in uuid.uuid4().hex[:10])


async def new_course(
    client: httpx.AsyncClient, owner: User, title: str, description: str, publish: bool = True
) -> int:
    created = await client.post(
        "/api/courses/",
        json={"title": title, "short_description": description},
        headers=owner.headers,
    )
    assert created.status_code == 201, created.text
    course_id = created.json()["id"]
    if publish:
        published = await client.post(f"/api/courses/{course_id}/publish/", headers=owner.headers)
        assert published.status_code == 200, published.text
    return course_id


async def courses(client: httpx.AsyncClient, user: User, **params: Any) -> httpx.Response:
    return await client.get("/api/courses/", params=params, headers=user.headers)


def ids(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [course["id"] for course in response.json()["results"]]


async def test_search_is_stemmed_and_ranked_titles_first(
    client: httpx.AsyncClient, instructor: User, student: User
) -> None:
    tag = word()
    cooking = await new_course(client, instructor, f"Cooking basics {tag}", "Knives and heat.")
    cooks = await new_course(client, instructor, f"Baking {tag}", "What cooks know about bread.")
    unrelated = await new_course(client, instructor, f"Gardening {tag}", "Soil and seeds.")
    draft = await new_course(client, instructor, f"Cooked draft {tag}", "Not out.", publish=False)

    # "cook" finds Cooking (title) and cooks (description): the title match ranks first.
    found = await courses(client, student, search="cook", instructor=instructor.id)
    assert ids(found) == [cooking, cooks]
    assert found.json()["count"] == 2
    # The owner also sees their draft; both words must match ("cook" AND the tag).
    assert set(ids(await courses(client, instructor, search=f"COOKING {tag}"))) == {
        cooking,
        cooks,
        draft,
    }
    assert ids(await courses(client, student, search=f"{tag} garden")) == [unrelated]
    assert ids(await courses(client, student, search=f"{tag} -cook -garden")) == []
    # Any text is a search, not an error: quotes, operators, stop words only.
    for text in ('"cooking basics', "cook & | ! ( :*", "the", "   "):
        response = await courses(client, student, search=text, instructor=instructor.id)
        assert response.status_code == 200, response.text
    assert_error_body(await courses(client, student, search="x" * 201), 400, "search")


async def test_orderings_filters_and_pagination(client: httpx.AsyncClient, student: User) -> None:
    owner = await register_and_login(client, "Instructor")
    tag = word()
    # Two share a title: the tie goes by id, the way the ordering runs.
    made = [
        await new_course(client, owner, f"{title} {tag}", "Topics.")
        for title in ("Beta", "Alpha", "Gamma", "Alpha")
    ]
    beta, alpha1, gamma, alpha2 = made
    mine = {"instructor": owner.id}
    assert ids(await courses(client, student, **mine)) == made[::-1]  # newest first
    assert ids(await courses(client, student, ordering="-created_at", **mine)) == made[::-1]
    assert ids(await courses(client, student, ordering="created_at", **mine)) == made
    assert ids(await courses(client, student, ordering="title", **mine)) == [
        alpha1,
        alpha2,
        beta,
        gamma,
    ]
    assert ids(await courses(client, student, ordering="-title", **mine)) == [
        gamma,
        beta,
        alpha2,
        alpha1,
    ]
    assert ids(await courses(client, student, ordering="code", **mine)) == made
    assert ids(await courses(client, student, ordering="-code", **mine)) == made[::-1]
    for bad in ("id", "relevance", "-", "title,code"):
        assert_error_body(await courses(client, student, ordering=bad), 400, "ordering")
    # Search + ordering + instructor + paging.
    first = await courses(
        client, student, search=f"alpha {tag}", ordering="-code", page_size=1, **mine
    )
    assert first.json()["count"] == 2
    assert ids(first) == [alpha2]
    assert ids(await client.get(first.json()["next"], headers=student.headers)) == [alpha1]
    assert_error_body(
        await courses(client, student, search=f"alpha {tag}", page=3, page_size=1), 404
    )
    # Another instructor's courses, asked for by an instructor: outside what they see.
    other = await register_and_login(client, "Instructor")
    assert (await courses(client, other, **mine)).json()["count"] == 0
    assert_error_body(await courses(client, student, instructor=0), 400, "instructor")
    assert_error_body(await courses(client, student, instructor="x"), 400, "instructor")


async def test_codes_order_by_their_number_past_9999(engine: AsyncEngine) -> None:
    """COURSE-9999 comes before COURSE-10000 (a plain string sort would put it after)."""
    instructor_id = 10**15 + uuid.uuid4().int % 10**9
    async with engine.connect() as connection:
        transaction = await connection.begin()
        try:
            # Rolled back below; a test run never draws that many codes from the sequence.
            for code in ("COURSE-10000", "COURSE-9999"):
                await connection.exec_driver_sql(
                    "INSERT INTO catalog.courses"
                    " (code, title, short_description, instructor_id, instructor_name)"
                    " VALUES (%(code)s, 'T', 'D', %(instructor)s, 'I')",
                    {"code": code, "instructor": instructor_id},
                )
            session = AsyncSession(bind=connection)
            scope = ListScope(instructor_id=instructor_id, published_only=False)
            for ordering, descending, expected in (
                ("code", False, ["COURSE-9999", "COURSE-10000"]),
                ("code", True, ["COURSE-10000", "COURSE-9999"]),
            ):
                page, _ = await store.list_courses(
                    session,
                    scope,
                    None,
                    offset=0,
                    limit=20,
                    query=CourseQuery(ordering=ordering, descending=descending),
                )
                assert [item.course.code for item in page] == expected
        finally:
            await transaction.rollback()


# --- the plan at 3,000 courses -----------------------------------------------------------------


@pytest.mark.parametrize("ordering", ["", "title"])
async def test_search_plan_uses_the_gin_index_at_3000_courses(
    engine: AsyncEngine, ordering: str
) -> None:
    """The list's own statements (captured as sent), EXPLAINed on a catalogue of 3,000
    published courses: no sequential scan of courses. Everything is rolled back."""
    tag = word()
    async with engine.connect() as connection:
        transaction = await connection.begin()
        try:
            await connection.exec_driver_sql(
                "INSERT INTO catalog.courses"
                " (code, title, short_description, instructor_id, instructor_name, status)"
                " SELECT 'PLAN-' || n || %(tag)s,"
                "  CASE WHEN n %% 100 = 0 THEN 'Cooking ' || %(tag)s ELSE 'Course ' || n END,"
                "  'Practical topics, part ' || n, 1, 'Planner', 'published'"
                " FROM generate_series(1, %(n)s) AS n",
                {"tag": tag, "n": PLAN_COURSES},
            )
            await connection.exec_driver_sql("ANALYZE catalog.courses")
            sent: list[tuple[str, Any]] = []

            def capture(_c: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
                sent.append((statement, parameters))

            session = AsyncSession(bind=connection)
            event.listen(engine.sync_engine, "before_cursor_execute", capture)
            try:
                page, total = await store.list_courses(
                    session,
                    ListScope(instructor_id=None, published_only=True),
                    None,
                    offset=0,
                    limit=20,
                    query=CourseQuery(search=f"cook {tag}", ordering=ordering or None),
                )
            finally:
                event.remove(engine.sync_engine, "before_cursor_execute", capture)
            assert total == PLAN_COURSES // 100
            assert all(item.course.title.startswith("Cooking") for item in page)
            searches = [(sql, params) for sql, params in sent if "@@" in sql]
            assert len(searches) == 2  # the count and the page
            for sql, params in searches:
                plan = await connection.exec_driver_sql("EXPLAIN " + sql, params)
                text = "\n".join(row[0] for row in plan)
                assert "Seq Scan on courses" not in text, text
                assert "ix_courses_search_document" in text, text
        finally:
            await transaction.rollback()
