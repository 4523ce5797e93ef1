"""Bench scenarios of issue #13: a course's roster and statistics at 10,000 active enrollments,
and a one-word catalogue search over 3,000 published courses.

Data. The roster course and its lessons are made through the API by the bench instructor. Its
10,000 enrollments are inserted with SQL into schema learning (synthetic students, ids far above
any real user's, each with one progress row per lesson and 0..10 of them completed, those with
all 10 completed), and their running counts: registering 10,000 students through the API costs minutes of argon2 alone.
The 3,000 search courses are created and published through the API (no lessons), by another
instructor, with titles drawn from a small vocabulary so `cook` matches one in TOPICS.
`enrollment_progress` (scenarios.py) now answers `next_lesson` too, from the rows it reads.
"""

from __future__ import annotations

import httpx
import psycopg
from courseplatform.catalog.v1 import catalog_pb2
from courseplatform.learning.v1 import learning_pb2

from tests.bench.config import BenchError, log
from tests.bench.platform import Platform
from tests.bench.seed import Seed, auth, bounded, create_course, expect, register, run_label
from tests.bench.wrk import HttpRequest

ROSTER_ENROLLMENTS = 10_000
SEARCH_COURSES = 3_000
SEARCH_WORD = "cook"
TOPICS = (
    "Cooking", "Gardening", "Painting", "Statistics", "Chemistry", "Carpentry", "Photography",
    "Astronomy", "Accounting", "Poetry", "Sailing", "Knitting", "Welding", "Typography",
    "Beekeeping", "Geology", "Pottery", "Negotiation", "Calligraphy", "Cartography",
    "Robotics", "Singing", "Chess", "Cycling", "Bookbinding", "Fencing", "Juggling",
    "Origami", "Archery", "Composting",
)  # fmt: skip
# Ids of synthetic students: far above what identity hands out in a bench run.
SYNTHETIC_STUDENT_BASE = 10**12

_SEED_ROSTER_SQL = """
WITH new_enrollments AS (
    INSERT INTO learning.enrollments
        (student_id, student_name, course_id, course_title, enrolled_at, completed_at)
    SELECT %(base)s + n, 'Bench Student ' || lpad(n::text, 5, '0'), %(course)s, %(title)s,
           now() - make_interval(secs => %(count)s - n),
           CASE WHEN n %% 11 = 10 THEN now() END
    FROM generate_series(1, %(count)s) AS n
    RETURNING id, student_id - %(base)s AS n
)
INSERT INTO learning.lesson_progress
    (enrollment_id, lesson_id, lesson_title, lesson_order, completed, completed_at)
SELECT e.id, lesson.id, 'Lesson ' || lesson.ord, lesson.ord,
       lesson.ord <= e.n %% 11, CASE WHEN lesson.ord <= e.n %% 11 THEN now() END
FROM new_enrollments AS e
CROSS JOIN unnest(%(lessons)s::bigint[]) WITH ORDINALITY AS lesson(id, ord)
"""
# The statistics' running counts of those rows, as migration learning 0004 fills them.
_SEED_COUNTS_SQL = (
    """
INSERT INTO learning.course_counts (course_id, enrollments, completed)
SELECT course_id, count(*), count(completed_at) FROM learning.enrollments
WHERE course_id = %(course)s AND withdrawn_at IS NULL GROUP BY course_id
ON CONFLICT (course_id) DO UPDATE
SET enrollments = excluded.enrollments, completed = excluded.completed
""",
    """
INSERT INTO learning.course_lesson_counts (course_id, lesson_id, completed, completed_in_completed)
SELECT e.course_id, p.lesson_id, count(*), count(*) FILTER (WHERE e.completed_at IS NOT NULL)
FROM learning.lesson_progress AS p JOIN learning.enrollments AS e ON e.id = p.enrollment_id
WHERE e.course_id = %(course)s AND e.withdrawn_at IS NULL AND p.completed
GROUP BY e.course_id, p.lesson_id
ON CONFLICT (course_id, lesson_id) DO UPDATE
SET completed = excluded.completed, completed_in_completed = excluded.completed_in_completed
""",
)


async def prepare_roster(http: httpx.AsyncClient, platform: Platform, seed: Seed) -> None:
    """Once per run: the roster course with its 10,000 enrollments."""
    if seed.roster_course_id:
        return
    if platform.database_url is None:
        raise BenchError(
            "course_roster/course_stats seed with SQL: they need the bench's own platform"
        )
    course = await create_course(http, seed.instructor, 0)
    log(f"roster: inserting {ROSTER_ENROLLMENTS} enrollments into course {course.id}")
    async with await psycopg.AsyncConnection.connect(platform.database_url) as connection:
        await connection.execute(
            _SEED_ROSTER_SQL,
            {
                "base": SYNTHETIC_STUDENT_BASE,
                "course": course.id,
                "title": "Course 0: practical topics",
                "count": ROSTER_ENROLLMENTS,
                "lessons": course.lesson_ids,
            },
        )
        for statement in _SEED_COUNTS_SQL:
            await connection.execute(statement, {"course": course.id})
        await connection.execute("ANALYZE learning.enrollments")
        await connection.execute("ANALYZE learning.lesson_progress")
    seed.roster_course_id = course.id


async def prepare_search(http: httpx.AsyncClient, platform: Platform, seed: Seed) -> None:
    """Once per run: 3,000 published courses of another instructor, through the API."""
    if seed.search_ready:
        return
    owner = await register(http, "Instructor", f"bench-search-instructor-{run_label()}")

    async def make(n: int) -> None:
        topic = TOPICS[n % len(TOPICS)]
        created = expect(
            await http.post(
                "/api/courses/",
                json={
                    "title": f"{topic} {n}: practical topics",
                    "short_description": f"Everything about {topic.lower()}, from first steps on.",
                },
                headers=auth(owner),
            ),
            201,
        )
        expect(await http.post(f"/api/courses/{created['id']}/publish/", headers=auth(owner)), 200)

    log(f"search: creating {SEARCH_COURSES} published courses through the API")
    await bounded(8, [lambda n=n: make(n) for n in range(SEARCH_COURSES)])
    if platform.database_url is not None:
        async with await psycopg.AsyncConnection.connect(platform.database_url) as connection:
            await connection.execute("ANALYZE catalog.courses")
    seed.search_ready = True


def course_roster_http(seed: Seed) -> list[HttpRequest]:
    path = f"/api/courses/{seed.roster_course_id}/enrollments/"
    return [HttpRequest("GET", path, seed.instructor.access)]


def course_roster_grpc_request(seed: Seed) -> bytes:
    return learning_pb2.ListCourseEnrollmentsRequest(
        course_id=seed.roster_course_id, page=1, page_size=20
    ).SerializeToString()


def course_stats_http(seed: Seed) -> list[HttpRequest]:
    path = f"/api/courses/{seed.roster_course_id}/stats/"
    return [HttpRequest("GET", path, seed.instructor.access)]


def course_stats_grpc_request(seed: Seed) -> bytes:
    return learning_pb2.GetCourseStatsRequest(course_id=seed.roster_course_id).SerializeToString()


def search_courses_http(seed: Seed) -> list[HttpRequest]:
    return [HttpRequest("GET", f"/api/courses/?search={SEARCH_WORD}", seed.student.access)]


def search_courses_grpc_request(seed: Seed) -> bytes:
    return catalog_pb2.ListCoursesRequest(
        page=1, page_size=20, search=SEARCH_WORD
    ).SerializeToString()
