"""A database outage, for real: the platform runs against its own PostgreSQL, which the test
stops and starts again (same data directory, same socket) while the services keep running.

During the outage REST answers 503 with the contract body (never 500), direct gRPC answers
UNAVAILABLE, every service's gRPC health turns NOT_SERVING and /readyz/ 503. When the database
is back, health turns SERVING and the same requests succeed, without restarting anything.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import grpc
import httpx
import pytest
from courseplatform.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs import migrations
from libs.embedded import ensure_database, free_port
from libs.grpc_server import LIVENESS_SERVICE, GrpcServer
from libs.settings import Settings
from tests.conftest import (
    SERVICES,
    TEST_PASSWORD,
    User,
    _build_server,
    assert_error_body,
    register_and_login,
    serve_asgi,
)
from tests.learning_support import enroll, progress_rows, published_course
from tests.postgres_support import RestartablePostgres

UNAVAILABLE_MESSAGE = "A backend service is unavailable."
WAIT_S = 20.0


@dataclass
class Platform:
    database: RestartablePostgres
    http: httpx.AsyncClient
    targets: dict[str, str]

    def stop_database(self) -> None:
        self.database.stop()

    def start_database(self) -> None:
        self.database.start()  # same directory, same socket


@pytest.fixture(scope="module")
async def platform(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    database = RestartablePostgres(tmp_path_factory.mktemp("outage") / "postgres")
    url = ensure_database(database.url, "courseplatform")
    for service in SERVICES:
        migrations.upgrade(url, service)
    ports = {name: free_port() for name in SERVICES}
    private = settings.model_copy(
        update={
            "database_url": Settings(database_url=url).database_url,
            **{f"{name}_port": port for name, port in ports.items()},
            **{f"{name}_target": f"127.0.0.1:{port}" for name, port in ports.items()},
            "health_check_interval_s": 0.2,
            "health_check_timeout_s": 1.0,
            "db_connect_timeout_s": 2,
        }
    )
    servers: list[GrpcServer] = []
    targets: dict[str, str] = {}
    for name in SERVICES:
        server = _build_server(name, private)
        targets[name] = f"127.0.0.1:{await server.start()}"
        servers.append(server)
    from gateway.app import create_app

    holder = Platform(database, None, targets)  # type: ignore[arg-type]
    try:
        async with (
            serve_asgi(create_app(private)) as base_url,
            httpx.AsyncClient(base_url=base_url, timeout=30) as http,
        ):
            holder.http = http
            yield holder
    finally:
        for server in reversed(servers):
            await server.stop()
        database.stop()


async def health_of(target: str, service: str = "") -> str:
    async with grpc.aio.insecure_channel(target) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=2
        )
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


async def wait_until(check: Callable[[], Awaitable[bool]], what: str) -> float:
    """Seconds until `check` held (bounded wait)."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > WAIT_S:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def all_health(platform: Platform, status: str, service: str = "") -> bool:
    found = await asyncio.gather(
        *(health_of(target, service) for target in platform.targets.values())
    )
    return all(value == status for value in found)


async def list_courses_grpc(target: str, user: User) -> catalog_pb2.ListCoursesResponse:
    async with grpc.aio.insecure_channel(target) as channel:
        return await catalog_pb2_grpc.CatalogServiceStub(channel).ListCourses(
            catalog_pb2.ListCoursesRequest(),
            metadata=(("authorization", f"Bearer {user.access}"),),
            timeout=10,
        )


async def test_database_outage_is_503_and_recovers_without_restarts(platform: Platform) -> None:
    http = platform.http
    instructor = await register_and_login(http, "Instructor")
    student = await register_and_login(http, "Student")
    course = await published_course(http, instructor, lessons=2)
    enrollment = await enroll(http, student, course.id)
    first_lesson = (await progress_rows(http, student, enrollment["id"]))[0]
    assert await all_health(platform, "SERVING")
    ready = await http.get("/readyz/")
    assert ready.status_code == 200, ready.text

    def requests() -> list[Awaitable[httpx.Response]]:
        return [
            http.post("/api/auth/login/", json={"email": student.email, "password": TEST_PASSWORD}),
            http.get("/api/courses/", headers=instructor.headers),
            http.get(f"/api/enrollments/{enrollment['id']}/", headers=student.headers),
            http.post(f"/api/progress/{first_lesson['id']}/complete/", headers=student.headers),
        ]

    platform.stop_database()
    try:
        for response in await asyncio.gather(*requests()):
            body = assert_error_body(response, 503)
            assert body["message"] == UNAVAILABLE_MESSAGE, response.request.url
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await list_courses_grpc(platform.targets["catalog"], instructor)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert caught.value.details() == UNAVAILABLE_MESSAGE
        await wait_until(lambda: all_health(platform, "NOT_SERVING"), "health NOT_SERVING")
        # The process is alive all the same: liveness (what Kubernetes restarts pods on) holds.
        assert await all_health(platform, "SERVING", LIVENESS_SERVICE)
        not_ready = await http.get("/readyz/")
        assert_error_body(not_ready, 503)
        # Clients skip replicas that report NOT_SERVING (libs/grpc_client.py healthCheckConfig),
        # so the gateway's own health call finds no replica to ask: UNAVAILABLE.
        assert set(not_ready.json()["backends"].values()) == {"UNAVAILABLE"}
    finally:
        platform.start_database()

    await wait_until(lambda: all_health(platform, "SERVING"), "health SERVING again")
    assert (await http.get("/readyz/")).status_code == 200
    login, courses, detail, completed = await asyncio.gather(*requests())
    assert login.status_code == 200, login.text
    assert courses.status_code == 200 and courses.json()["count"] == 1, courses.text
    assert detail.status_code == 200, detail.text
    assert completed.status_code == 200 and completed.json()["completed"] is True, completed.text
    assert (await list_courses_grpc(platform.targets["catalog"], instructor)).total_count == 1
