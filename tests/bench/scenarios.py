"""The scenarios: what each sends over REST, the gRPC calls the gateway makes for it (the direct
baseline), and its budget."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson
from courseplatform.catalog.v1 import catalog_pb2
from courseplatform.identity.v1 import identity_pb2
from courseplatform.learning.v1 import learning_pb2
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message

from tests.bench import roster_scenarios as roster
from tests.bench.seed import PASSWORD, Enrollment, Seed
from tests.bench.wrk import HttpRequest

if TYPE_CHECKING:
    import httpx

    from tests.bench.platform import Platform

# update_course cycles through this many distinct titles per course.
TITLE_REVISIONS = 20


@dataclass(frozen=True)
class Budget:
    """A p99 ceiling and a rate floor: either absolute (`min_rps`) or a fraction of the same
    run's `pgbench -S` rate (`floor_fraction`), which moves with the machine as the platform does."""

    max_p99_ms: float
    min_rps: float | None = None
    floor_fraction: float | None = None

    def required_rps(self, floor_tps: float | None) -> float | None:
        """The rate to reach; None when it is a fraction and the floor was not measured."""
        if self.floor_fraction is None:
            return self.min_rps
        return None if floor_tps is None else self.floor_fraction * floor_tps

    def describe(self) -> str:
        rate = (
            f"{self.floor_fraction:.0%} of pgbench -S"
            if self.floor_fraction is not None
            else f"{self.min_rps:,.0f}/s"
        )
        return f">= {rate}, p99 <= {self.max_p99_ms:g} ms"


@dataclass(frozen=True)
class GrpcStep:
    """One unary call per iteration; requests are used round robin."""

    service: str  # "identity", "catalog", "learning": the target's name
    method: str  # full path, /package.Service/Method
    requests: list[bytes]
    token: str | None


@dataclass(frozen=True)
class Scenario:
    name: str
    budget: Budget | None
    # Requests wrk replays (None: the scenario builds them itself, see complete_lesson).
    http: Callable[[Seed], list[HttpRequest]] | None
    # What the gateway calls for one such request, in order (None: no direct baseline).
    grpc: Callable[[Seed], list[GrpcStep]] | None = None
    # Part of the scale sweep (reads whose cost must not grow with the data).
    swept: bool = False
    # What the scenario needs seeded: "courses", "enrollments" (which implies courses).
    needs: frozenset[str] = frozenset({"courses", "enrollments"})
    # Conditional GETs: each request carries If-None-Match with the ETag its URL answered
    # (the bench fetches them first; no ETag, no row).
    conditional: bool = False
    # Seeds what only this scenario needs, before its requests are built (idempotent).
    prepare: Callable[[httpx.AsyncClient, Platform, Seed], Awaitable[None]] | None = None


def _method(descriptor_service: str, module: object, method: str) -> str:
    service = module.DESCRIPTOR.services_by_name[descriptor_service]  # type: ignore[attr-defined]
    return f"/{service.full_name}/{method}"


def _json(value: object) -> str:
    return orjson.dumps(value).decode()


def _bytes(message: Message) -> bytes:
    return message.SerializeToString()


CATALOG = ("CatalogService", catalog_pb2)
LEARNING = ("LearningService", learning_pb2)
IDENTITY = ("IdentityService", identity_pb2)


def list_courses_http(seed: Seed) -> list[HttpRequest]:
    return [HttpRequest("GET", "/api/courses/", seed.student.access)]


def list_courses_grpc(seed: Seed) -> list[GrpcStep]:
    request = catalog_pb2.ListCoursesRequest(page=1, page_size=20)
    return [
        GrpcStep(
            "catalog",
            _method(*CATALOG, "ListCourses"),
            [_bytes(request)],
            seed.student.access,
        )
    ]


def course_detail_http(seed: Seed) -> list[HttpRequest]:
    return [
        HttpRequest("GET", f"/api/courses/{course.id}/", seed.student.access)
        for course in seed.courses
    ]


def course_detail_grpc(seed: Seed) -> list[GrpcStep]:
    requests = [
        _bytes(catalog_pb2.GetCourseRequest(course_id=course.id)) for course in seed.courses
    ]
    return [GrpcStep("catalog", _method(*CATALOG, "GetCourse"), requests, seed.student.access)]


def enrollment_http(seed: Seed) -> list[HttpRequest]:
    return [
        HttpRequest("GET", f"/api/enrollments/{enrollment.id}/", seed.student.access)
        for enrollment in seed.enrollments
    ]


def enrollment_grpc(seed: Seed) -> list[GrpcStep]:
    requests = [
        _bytes(learning_pb2.GetEnrollmentRequest(enrollment_id=enrollment.id))
        for enrollment in seed.enrollments
    ]
    return [
        GrpcStep("learning", _method(*LEARNING, "GetEnrollment"), requests, seed.student.access)
    ]


def list_progress_http(seed: Seed) -> list[HttpRequest]:
    return [HttpRequest("GET", "/api/progress/", seed.student.access)]


def list_progress_grpc(seed: Seed) -> list[GrpcStep]:
    request = learning_pb2.ListProgressRequest(page=1, page_size=20)
    return [
        GrpcStep(
            "learning", _method(*LEARNING, "ListProgress"), [_bytes(request)], seed.student.access
        )
    ]


def _titles(seed: Seed) -> list[tuple[int, str]]:
    return [
        (course.id, f"Course {course.id}: practical topics, revision {revision}")
        for revision in range(TITLE_REVISIONS)
        for course in seed.courses
    ]


def update_course_http(seed: Seed) -> list[HttpRequest]:
    return [
        HttpRequest(
            "PATCH", f"/api/courses/{course_id}/", seed.instructor.access, _json({"title": title})
        )
        for course_id, title in _titles(seed)
    ]


def update_course_grpc(seed: Seed) -> list[GrpcStep]:
    # The gateway reads the course first (read-only fields are checked against it), then updates.
    titles = _titles(seed)
    token = seed.instructor.access
    return [
        GrpcStep(
            "catalog",
            _method(*CATALOG, "GetCourse"),
            [_bytes(catalog_pb2.GetCourseRequest(course_id=course_id)) for course_id, _ in titles],
            token,
        ),
        GrpcStep(
            "catalog",
            _method(*CATALOG, "UpdateCourse"),
            [
                _bytes(
                    catalog_pb2.UpdateCourseRequest(
                        course_id=course_id, title=title, update_mask=FieldMask(paths=["title"])
                    )
                )
                for course_id, title in titles
            ],
            token,
        ),
    ]


def login_http(seed: Seed) -> list[HttpRequest]:
    body = _json({"email": seed.student.email, "password": PASSWORD})
    return [HttpRequest("POST", "/api/auth/login/", None, body)]


def login_grpc(seed: Seed) -> list[GrpcStep]:
    request = identity_pb2.LoginRequest(email=seed.student.email, password=PASSWORD)
    return [GrpcStep("identity", _method(*IDENTITY, "Login"), [_bytes(request)], None)]


def token_verify_http(seed: Seed) -> list[HttpRequest]:
    return [HttpRequest("POST", "/api/token/verify/", None, _json({"token": seed.student.access}))]


def token_verify_grpc(seed: Seed) -> list[GrpcStep]:
    # The gateway verifies locally with the published keys; the nearest gRPC equivalent is
    # identity's VerifyToken, which needs an access token of its own to be called.
    request = identity_pb2.VerifyTokenRequest(
        token=seed.student.access, token_type=identity_pb2.TOKEN_TYPE_ACCESS
    )
    return [
        GrpcStep(
            "identity", _method(*IDENTITY, "VerifyToken"), [_bytes(request)], seed.student.access
        )
    ]


def complete_lesson_requests(
    enrollments: list[Enrollment], threads: int
) -> list[list[HttpRequest]]:
    """Each wrk thread gets its own enrollments and completes their lessons in order, one
    enrollment after another. complete_lesson runs one connection per thread: a connection sends
    its next request only when the previous answer is in, so lesson N+1 of an enrollment always
    follows the committed lesson N (in order by construction, not by timing luck)."""
    return [
        [
            HttpRequest("POST", f"/api/progress/{progress_id}/complete/", enrollment.student.access)
            for enrollment in enrollments[thread::threads]
            for progress_id in enrollment.progress_ids
        ]
        for thread in range(threads)
    ]


def course_detail_304_http(seed: Seed) -> list[HttpRequest]:
    # The same requests as course_detail; the bench adds each URL's If-None-Match.
    return course_detail_http(seed)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "list_courses_student",
        Budget(50, floor_fraction=0.06),
        list_courses_http,
        list_courses_grpc,
        swept=True,
        needs=frozenset({"courses"}),
    ),
    Scenario(
        "course_detail",
        Budget(30, floor_fraction=0.10),
        course_detail_http,
        course_detail_grpc,
        swept=True,
        needs=frozenset({"courses"}),
    ),
    Scenario(
        "course_detail_304",
        Budget(15, floor_fraction=0.20),
        course_detail_304_http,
        None,
        needs=frozenset({"courses"}),
        conditional=True,
    ),
    Scenario(
        "enrollment_progress",
        Budget(50, floor_fraction=0.06),
        enrollment_http,
        enrollment_grpc,
        swept=True,
    ),
    Scenario(
        "list_progress",
        Budget(60, floor_fraction=0.05),
        list_progress_http,
        list_progress_grpc,
        swept=True,
    ),
    # login and token_verify keep their absolute budgets (CPU-bound on hashing and signatures,
    # not on the database path the floor measures).
    Scenario("login", Budget(400, min_rps=60), login_http, login_grpc, needs=frozenset()),
    Scenario(
        "token_verify",
        Budget(15, min_rps=3500),
        token_verify_http,
        token_verify_grpc,
        needs=frozenset(),
    ),
    Scenario(
        "update_course",
        Budget(80, floor_fraction=0.03),
        update_course_http,
        update_course_grpc,
        needs=frozenset({"courses"}),
    ),
    # Issue #13 (tests/bench/roster_scenarios.py).
    Scenario(
        "course_roster",
        Budget(100, min_rps=300),
        roster.course_roster_http,
        lambda seed: [
            GrpcStep(
                "learning",
                _method(*LEARNING, "ListCourseEnrollments"),
                [roster.course_roster_grpc_request(seed)],
                seed.instructor.access,
            )
        ],
        needs=frozenset(),
        prepare=roster.prepare_roster,
    ),
    Scenario(
        "course_stats",
        Budget(100, min_rps=300),
        roster.course_stats_http,
        lambda seed: [
            GrpcStep(
                "learning",
                _method(*LEARNING, "GetCourseStats"),
                [roster.course_stats_grpc_request(seed)],
                seed.instructor.access,
            )
        ],
        needs=frozenset(),
        prepare=roster.prepare_roster,
    ),
    Scenario(
        "search_courses",
        Budget(100, min_rps=300),
        roster.search_courses_http,
        lambda seed: [
            GrpcStep(
                "catalog",
                _method(*CATALOG, "ListCourses"),
                [roster.search_courses_grpc_request(seed)],
                seed.student.access,
            )
        ],
        needs=frozenset(),
        prepare=roster.prepare_search,
    ),
    # Its requests are built from a pool of fresh enrollments (one open lesson each).
    Scenario("complete_lesson", Budget(150, floor_fraction=0.01), None),
)
