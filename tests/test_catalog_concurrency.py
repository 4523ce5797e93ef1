"""Races settled by the database, seen through the gateway: course codes from a sequence, and
the per-course unique lesson order."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from tests.conftest import User, assert_error_body

CONCURRENT_COURSES = 50
CONCURRENT_LESSONS = 20


async def test_concurrent_course_creates_get_distinct_codes(
    client: httpx.AsyncClient, instructor: User
) -> None:
    responses = await asyncio.gather(
        *(
            client.post(
                "/api/courses/",
                json={"title": f"Race {n}", "short_description": "d"},
                headers=instructor.headers,
            )
            for n in range(CONCURRENT_COURSES)
        )
    )
    assert [response.status_code for response in responses] == [201] * CONCURRENT_COURSES
    codes = [response.json()["code"] for response in responses]
    assert len(set(codes)) == CONCURRENT_COURSES
    listed = await client.get("/api/courses/?page_size=100", headers=instructor.headers)
    assert listed.json()["count"] == CONCURRENT_COURSES


async def test_concurrent_lessons_with_one_order_one_wins(
    client: httpx.AsyncClient, instructor: User
) -> None:
    course = await client.post(
        "/api/courses/",
        json={"title": "Race", "short_description": "d"},
        headers=instructor.headers,
    )
    course_id = course.json()["id"]
    responses = await asyncio.gather(
        *(
            client.post(
                "/api/lessons/",
                json={"course": course_id, "title": f"Try {n}", "content": "c", "order": 1},
                headers=instructor.headers,
            )
            for n in range(CONCURRENT_LESSONS)
        )
    )
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 1, 400: CONCURRENT_LESSONS - 1}, statuses
    for response in responses:
        if response.status_code == 400:
            assert_error_body(response, 400, "order")
    lessons = await client.get(f"/api/lessons/?course={course_id}", headers=instructor.headers)
    assert lessons.json()["count"] == 1


async def test_concurrent_bulk_creates_with_overlapping_orders_one_wins(
    client: httpx.AsyncClient, instructor: User
) -> None:
    course = await client.post(
        "/api/courses/",
        json={"title": "Bulk race", "short_description": "d"},
        headers=instructor.headers,
    )
    course_id = course.json()["id"]
    responses = await asyncio.gather(
        *(
            client.post(
                "/api/lessons/bulk_create/",
                json={
                    "course": course_id,
                    "lessons": [
                        {"title": f"{n}-{order}", "content": "c", "order": order}
                        # Half the requests list their orders backwards.
                        for order in ((1, 2, 3) if n % 2 else (3, 2, 1))
                    ],
                },
                headers=instructor.headers,
            )
            for n in range(10)
        )
    )
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 1, 400: 9}, statuses
    lessons = await client.get(f"/api/lessons/?course={course_id}", headers=instructor.headers)
    # All three lessons of one request, none of the others: all or nothing under a race too.
    titles = {lesson["title"].split("-")[0] for lesson in lessons.json()["results"]}
    assert lessons.json()["count"] == 3 and len(titles) == 1
