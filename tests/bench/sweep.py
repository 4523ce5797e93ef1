"""Scale sweep data: grow the base set to 3,000 published courses x 10 lessons and 10,000
enrollments, through the public REST API at bounded concurrency (slower than SQL inserts, but it
needs no knowledge of any service's tables and the rows are exactly what real use makes).

The new courses belong to another instructor and the new enrollments to other students, so the
bench student's own pages stay the same size: what is measured is whether a request's cost
grows with the size of the tables (it must not: indexes, bounded pages, no full scans).
"""

from __future__ import annotations

import time

import httpx

from tests.bench.config import log
from tests.bench.seed import (
    Account,
    Course,
    Seed,
    auth,
    bounded,
    create_course,
    expect,
    register,
    run_label,
)

SWEEP_STUDENTS = 100


async def _enroll_only(http: httpx.AsyncClient, student: Account, course: Course) -> None:
    expect(
        await http.post("/api/enrollments/", json={"course": course.id}, headers=auth(student)),
        201,
    )


async def grow(
    http: httpx.AsyncClient, seed: Seed, courses: int, enrollments: int, concurrency: int
) -> None:
    started = time.monotonic()
    label = run_label()
    instructor = await register(http, "Instructor", f"bench-sweep-instructor-{label}")
    missing_courses = max(0, courses - len(seed.courses))
    new_courses = await bounded(
        concurrency,
        [
            lambda n=n: create_course(http, instructor, n)
            for n in range(len(seed.courses) + 1, len(seed.courses) + missing_courses + 1)
        ],
    )
    catalogue = [*seed.courses, *new_courses]
    log(f"  {len(catalogue)} courses after {time.monotonic() - started:.0f} s")

    missing = max(0, enrollments - seed.enrollment_count)
    students = await bounded(
        concurrency,
        [
            lambda n=n: register(http, "Student", f"bench-sweep-{label}-{n}")
            for n in range(SWEEP_STUDENTS)
        ],
    )
    # Student n takes courses n, n+1, ... (mod the catalogue): spread over courses and students.
    pairs = [
        (students[n % SWEEP_STUDENTS], catalogue[(n // SWEEP_STUDENTS + n) % len(catalogue)])
        for n in range(missing)
    ]
    await bounded(concurrency, [lambda p=p: _enroll_only(http, *p) for p in pairs])
    seed.enrollment_count += missing
    seed.extra_students.extend(students)
    log(f"  {seed.enrollment_count} enrollments after {time.monotonic() - started:.0f} s")
