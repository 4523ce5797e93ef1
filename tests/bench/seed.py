"""The bench's data, created through the public REST API like any client would.

Base set: 1 instructor with 30 published courses x 10 lessons (bulk_create), 1 student enrolled
in 5 courses with the first 3 lessons of each completed, and a second student with 5 enrollments
of their own (10 enrollments in all, and "own rows only" filters have something to filter).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from tests.bench.config import BenchError

PASSWORD = "bench-password-42"
COURSES = 30
LESSONS_PER_COURSE = 10
ENROLLED_COURSES = 5
COMPLETED_PER_ENROLLMENT = 3
# Lesson bodies of a realistic paragraph's length; a page of 20 courses with their lessons is
# then about 120 KB of JSON.
LESSON_CONTENT = (
    "In this lesson we look at the idea step by step, with a worked example, the usual "
    "mistakes, and a short exercise to check your understanding before moving on. "
) * 2

T = TypeVar("T")


def expect(response: httpx.Response, status: int) -> Any:
    if response.status_code != status:
        raise BenchError(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code} (expected {status}): {response.text[:500]}"
        )
    return response.json() if response.content else None


async def bounded(limit: int, jobs: Iterable[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run the jobs at most `limit` at a time; results in job order."""
    semaphore = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Awaitable[T]]) -> T:
        async with semaphore:
            return await job()

    return list(await asyncio.gather(*(run(job) for job in jobs)))


@dataclass
class Account:
    id: int
    email: str
    role: str
    access: str = ""

    async def login(self, http: httpx.AsyncClient) -> str:
        response = await http.post(
            "/api/auth/login/", json={"email": self.email, "password": PASSWORD}
        )
        self.access = expect(response, 200)["access"]
        return self.access


@dataclass
class Course:
    id: int
    # Lesson ids in lesson order.
    lesson_ids: list[int]


@dataclass
class Enrollment:
    id: int
    course_id: int
    student: Account
    # Progress row ids in lesson order.
    progress_ids: list[int]


@dataclass
class Seed:
    instructor: Account
    student: Account
    courses: list[Course]
    # The student's enrollments (the other student's are not listed).
    enrollments: list[Enrollment]
    enrollment_count: int = 0
    extra_students: list[Account] = field(default_factory=list)
    # Issue #13's scenarios (roster_scenarios.py): their own data, made on first use.
    roster_course_id: int = 0
    search_ready: bool = False


def run_label() -> str:
    return uuid.uuid4().hex[:8]


async def register(http: httpx.AsyncClient, role: str, name: str) -> Account:
    email = f"{name}@bench.example.com"
    body = {
        "email": email,
        "full_name": name.replace("-", " ").title(),
        "role": role,
        "password": PASSWORD,
        "password_confirm": PASSWORD,
    }
    user = expect(await http.post("/api/register/", json=body), 201)
    account = Account(id=user["id"], email=email, role=role)
    await account.login(http)
    return account


def auth(account: Account) -> dict[str, str]:
    return {"Authorization": f"Bearer {account.access}"}


async def create_course(http: httpx.AsyncClient, owner: Account, number: int) -> Course:
    created = expect(
        await http.post(
            "/api/courses/",
            json={
                "title": f"Course {number}: practical topics",
                "short_description": f"Everything about topic {number}, from first steps on.",
            },
            headers=auth(owner),
        ),
        201,
    )
    lessons = [
        {"title": f"Lesson {order}", "content": LESSON_CONTENT, "order": order}
        for order in range(1, LESSONS_PER_COURSE + 1)
    ]
    made = expect(
        await http.post(
            "/api/lessons/bulk_create/",
            json={"course": created["id"], "lessons": lessons},
            headers=auth(owner),
        ),
        201,
    )
    expect(await http.post(f"/api/courses/{created['id']}/publish/", headers=auth(owner)), 200)
    by_order = sorted(made, key=lambda lesson: lesson["order"])
    return Course(id=created["id"], lesson_ids=[lesson["id"] for lesson in by_order])


async def enroll(http: httpx.AsyncClient, student: Account, course: Course) -> Enrollment:
    created = expect(
        await http.post("/api/enrollments/", json={"course": course.id}, headers=auth(student)),
        201,
    )
    rows = expect(
        await http.get(
            "/api/progress/",
            params={"enrollment": created["id"], "page_size": 100},
            headers=auth(student),
        ),
        200,
    )["results"]
    order = {lesson_id: index for index, lesson_id in enumerate(course.lesson_ids)}
    rows.sort(key=lambda row: order[row["lesson"]])
    return Enrollment(
        id=created["id"],
        course_id=course.id,
        student=student,
        progress_ids=[row["id"] for row in rows],
    )


async def complete(http: httpx.AsyncClient, enrollment: Enrollment, lessons: int) -> None:
    for progress_id in enrollment.progress_ids[:lessons]:
        expect(
            await http.post(
                f"/api/progress/{progress_id}/complete/", headers=auth(enrollment.student)
            ),
            200,
        )


async def seed_base(
    http: httpx.AsyncClient, concurrency: int, courses: bool = True, enrollments: bool = True
) -> Seed:
    """The base set; without `courses` (or `enrollments`) only the accounts (and courses) are
    made, for runs limited to scenarios that need no more."""
    label = run_label()
    instructor, student, other = await asyncio.gather(
        register(http, "Instructor", f"bench-instructor-{label}"),
        register(http, "Student", f"bench-student-{label}"),
        register(http, "Student", f"bench-other-student-{label}"),
    )
    seed = Seed(instructor=instructor, student=student, courses=[], enrollments=[])
    seed.extra_students.append(other)
    if not courses:
        return seed
    seed.courses = await bounded(
        concurrency,
        [lambda n=n: create_course(http, instructor, n) for n in range(1, COURSES + 1)],
    )
    if not enrollments:
        return seed
    picked = seed.courses[:ENROLLED_COURSES]
    seed.enrollments = await bounded(
        concurrency, [lambda c=c: enroll(http, student, c) for c in picked]
    )
    others = seed.courses[-ENROLLED_COURSES:]
    await bounded(concurrency, [lambda c=c: enroll(http, other, c) for c in others])
    seed.enrollment_count = 2 * ENROLLED_COURSES
    await bounded(
        concurrency,
        [lambda e=e: complete(http, e, COMPLETED_PER_ENROLLMENT) for e in seed.enrollments],
    )
    return seed


async def enrollment_pool(
    http: httpx.AsyncClient, seed: Seed, count: int, concurrency: int
) -> list[Enrollment]:
    """`count` fresh enrollments (every lesson open), spread over as many new students as it
    takes (a student enrolls in a course once)."""
    label = run_label()
    per_student = len(seed.courses)
    students = await bounded(
        concurrency,
        [
            lambda n=n: register(http, "Student", f"bench-pool-{label}-{n}")
            for n in range(-(-count // per_student))
        ],
    )
    seed.extra_students.extend(students)
    pairs = [(students[n // per_student], seed.courses[n % per_student]) for n in range(count)]
    made = await bounded(concurrency, [lambda p=p: enroll(http, *p) for p in pairs])
    seed.enrollment_count += len(made)
    return made
