"""Under overload, for real (functional, not timed; docs/overload.md): limits set small, work held
up by a row lock the test takes in PostgreSQL, and every answer checked over REST and gRPC.

- Past the gateway's in-flight limit: 503 + Retry-After + the contract body, before the body is
  parsed or the token verified; /healthz/ and /readyz/ still answer.
- Past a service's call limit: RESOURCE_EXHAUSTED (marked OVERLOADED) over gRPC, 503 + Retry-After
  over REST; the service's gRPC health still answers SERVING.
- identity's hashing queue full: login 503 at once.
- A write whose deadline passed while it waited is never done, even once the lock is released;
  the database's statement_timeout stops a statement and the request answers 504; waiting for a
  pooled connection is bounded and answers UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from courseplatform.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from courseplatform.identity.v1 import identity_pb2, identity_pb2_grpc
from google.protobuf.field_mask_pb2 import FieldMask
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.errors import OVERLOADED_MESSAGE
from libs import deadlines
from libs.embedded import free_port
from libs.errors import DeadlineExceeded
from libs.grpc_errors import OVERLOADED_REASON, decode_rpc_error
from libs.grpc_server import GrpcServer
from libs.settings import Settings, to_libpq_url
from tests.conftest import (
    TEST_PASSWORD,
    User,
    _build_server,
    assert_error_body,
    register_and_login,
    serve_asgi,
)
from tests.learning_support import query

WAIT_S = 20.0
TIMEOUT_MESSAGE = "A backend service did not answer in time."
# Small pools: these servers share the suite's PostgreSQL with everything else.
SMALL_POOL = {"db_pool_size": 2, "db_max_overflow": 1}


def private_settings(settings: Settings, **values: Any) -> Settings:
    """The suite's settings with `values`, for servers of this module on free ports."""
    return settings.model_copy(update={**SMALL_POOL, **values})


@asynccontextmanager
async def grpc_service(name: str, settings: Settings, **values: Any) -> AsyncIterator[str]:
    """One more `name` server on the suite's database, with `values`; yields its target."""
    port = free_port()
    server: GrpcServer = _build_server(
        name, private_settings(settings, **{f"{name}_port": port}, **values)
    )
    await server.start()
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        await server.stop()


@asynccontextmanager
async def gateway(settings: Settings, **values: Any) -> AsyncIterator[httpx.AsyncClient]:
    from gateway.app import create_app

    async with (
        serve_asgi(create_app(private_settings(settings, **values))) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        yield http


@asynccontextmanager
async def course_row_locked(database_url: str, course_id: int) -> AsyncIterator[None]:
    """Holds the course's row lock (as a long transaction elsewhere would): every write to the
    course waits for it; reads do not."""
    conn = await psycopg.AsyncConnection.connect(to_libpq_url(database_url))
    async with conn, conn.transaction():
        await conn.execute("SELECT 1 FROM catalog.courses WHERE id = %s FOR UPDATE", (course_id,))
        yield


async def waiting_on_locks(database_url: str) -> int:
    rows = await query(
        to_libpq_url(database_url),
        "SELECT count(*) AS n FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    return int(rows[0]["n"])


async def until_blocked(database_url: str, count: int = 1) -> None:
    """Waits until `count` statements wait on a lock: the held-up call is inside the service."""
    started = time.monotonic()
    while await waiting_on_locks(database_url) < count:
        if time.monotonic() - started > WAIT_S:
            raise AssertionError("the call never reached the database")
        await asyncio.sleep(0.02)


async def course_title(database_url: str, course_id: int) -> str:
    rows = await query(
        to_libpq_url(database_url), "SELECT title FROM catalog.courses WHERE id = %s", course_id
    )
    return str(rows[0]["title"])


@pytest.fixture
async def course(client: httpx.AsyncClient, instructor: User) -> dict[str, Any]:
    created = await client.post(
        "/api/courses/",
        json={"title": "Before", "short_description": "overload"},
        headers=instructor.headers,
    )
    assert created.status_code == 201, created.text
    return created.json()


def assert_overloaded(response: httpx.Response) -> None:
    body = assert_error_body(response, 503)
    assert body["message"] == OVERLOADED_MESSAGE
    assert response.headers["retry-after"] == "1"


def rename(client: httpx.AsyncClient, user: User, course_id: int, title: str) -> Any:
    return client.patch(f"/api/courses/{course_id}/", json={"title": title}, headers=user.headers)


def auth(user: User) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {user.access}"),)


def update_request(course_id: int, title: str) -> catalog_pb2.UpdateCourseRequest:
    return catalog_pb2.UpdateCourseRequest(
        course_id=course_id, title=title, update_mask=FieldMask(paths=["title"])
    )


# --- the gateway's in-flight limit ----------------------------------------------------------------


async def test_gateway_refuses_past_its_in_flight_limit_and_probes_still_answer(
    settings: Settings,
    services: dict[str, str],
    instructor: User,
    course: dict[str, Any],
) -> None:
    async with gateway(settings, gateway_max_in_flight=1) as http:
        async with course_row_locked(settings.database_url, course["id"]):
            held = asyncio.create_task(rename(http, instructor, course["id"], "Held"))
            await until_blocked(settings.database_url)
            assert_overloaded(await http.get("/api/courses/", headers=instructor.headers))
            # Refused before the token is verified and before the body is parsed.
            assert_overloaded(
                await http.post(
                    "/api/courses/",
                    content=b"{not json",
                    headers={"Authorization": "Bearer forged"},
                )
            )
            assert_overloaded(
                await http.post("/api/token/verify/", json={"token": instructor.access})
            )
            assert (await http.get("/healthz/")).status_code == 200
            ready = await http.get("/readyz")
            assert ready.status_code == 200, ready.text
        answered = await held
        assert answered.status_code == 200, answered.text
        # With the slot free again, the next request is served.
        assert (await http.get("/api/courses/", headers=instructor.headers)).status_code == 200


# --- a service's call limit -----------------------------------------------------------------------


async def test_service_refuses_past_its_call_limit_health_still_serving(
    settings: Settings,
    services: dict[str, str],
    instructor: User,
    course: dict[str, Any],
) -> None:
    async with (
        grpc_service("catalog", settings, grpc_max_concurrent_calls=1) as target,
        grpc.aio.insecure_channel(target) as channel,
        gateway(settings, catalog_target=target) as http,
    ):
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        async with course_row_locked(settings.database_url, course["id"]):
            held = asyncio.ensure_future(
                stub.UpdateCourse(
                    update_request(course["id"], "Held"), metadata=auth(instructor), timeout=30
                )
            )
            await until_blocked(settings.database_url)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetCourse(
                    catalog_pb2.GetCourseRequest(course_id=course["id"]), metadata=auth(instructor)
                )
            failure = decode_rpc_error(caught.value)
            assert failure.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert failure.reason == OVERLOADED_REASON
            # Health is never counted against, nor queued behind, the service's calls.
            health = health_pb2_grpc.HealthStub(channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)  # type: ignore[attr-defined]
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            # Over REST the refusal is a 503 with Retry-After, not the 429 of a rate limit.
            assert_overloaded(
                await http.get(f"/api/courses/{course['id']}/", headers=instructor.headers)
            )
        assert (await held).course.title == "Held"
        got = await http.get(f"/api/courses/{course['id']}/", headers=instructor.headers)
        assert got.status_code == 200, got.text


async def test_login_is_refused_at_once_when_the_hashing_queue_is_full(
    settings: Settings, services: dict[str, str]
) -> None:
    # A slower hash keeps the one slot busy while the rest arrive; the user is registered with
    # the same cost, so no login re-hashes.
    async with (
        grpc_service(
            "identity",
            settings,
            password_hash_concurrency=1,
            password_hash_queue=0,
            argon2_time_cost=6,
        ) as target,
        grpc.aio.insecure_channel(target) as channel,
        gateway(settings, identity_target=target) as http,
    ):
        user = await register_and_login(http, "Student")
        logins = await asyncio.gather(
            *(
                http.post("/api/auth/login/", json={"email": user.email, "password": TEST_PASSWORD})
                for _ in range(8)
            )
        )
        statuses = sorted(response.status_code for response in logins)
        assert 200 in statuses and 503 in statuses, statuses
        assert set(statuses) == {200, 503}, statuses
        for response in logins:
            if response.status_code == 503:
                assert_overloaded(response)
        # Over gRPC: RESOURCE_EXHAUSTED marked OVERLOADED.
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        calls = [
            stub.Login(
                identity_pb2.LoginRequest(email=user.email, password=TEST_PASSWORD), timeout=30
            )
            for _ in range(4)
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        refused = [decode_rpc_error(r) for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert refused, results
        assert all(f.code == grpc.StatusCode.RESOURCE_EXHAUSTED and f.overloaded for f in refused)


# --- deadlines ------------------------------------------------------------------------------------


async def test_a_write_whose_deadline_passed_is_never_done(
    settings: Settings, services: dict[str, str], instructor: User, course: dict[str, Any]
) -> None:
    async with gateway(settings, request_deadline_s=1.0) as http:
        async with course_row_locked(settings.database_url, course["id"]):
            response = await rename(http, instructor, course["id"], "Too late")
            body = assert_error_body(response, 504)
            assert body["message"] == TIMEOUT_MESSAGE
            # Held well past the deadline: a call still working would write on release.
            await asyncio.sleep(1.0)
        await asyncio.sleep(0.5)
        assert await waiting_on_locks(settings.database_url) == 0
        assert await course_title(settings.database_url, course["id"]) == "Before"


async def test_the_statement_timeout_stops_a_statement_and_answers_504(
    settings: Settings, services: dict[str, str], instructor: User, course: dict[str, Any]
) -> None:
    # A deadline far away: only the connection's statement_timeout can stop the statement.
    async with (
        grpc_service("catalog", settings, db_statement_timeout_s=0.5) as target,
        gateway(settings, catalog_target=target, request_deadline_s=60) as http,
        course_row_locked(settings.database_url, course["id"]),
    ):
        # Released 3 s later (on leaving the block): without the timeout the write would then
        # succeed with 200.
        answer = asyncio.create_task(rename(http, instructor, course["id"], "Stopped"))
        await asyncio.sleep(3.0)
        assert answer.done()
        body = assert_error_body(answer.result(), 504)
        assert body["message"] == TIMEOUT_MESSAGE
    assert await course_title(settings.database_url, course["id"]) == "Before"


async def test_transactions_carry_the_time_left_as_statement_timeout(engine: AsyncEngine) -> None:
    async def statement_timeout() -> str:
        async with engine.begin() as connection:
            return str((await connection.execute(text("SHOW statement_timeout"))).scalar_one())

    assert await statement_timeout() == "5s"  # the connection's own (DB_STATEMENT_TIMEOUT_S)
    token = deadlines.start(0.8)
    try:
        shown = await statement_timeout()
    finally:
        deadlines.reset(token)
    assert shown.endswith("ms") and 0 < int(shown.removesuffix("ms")) <= 800, shown


async def test_a_transaction_past_its_deadline_runs_nothing(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE IF NOT EXISTS public.deadline_probe (n int)"))
    token = deadlines.start(0)
    try:
        with pytest.raises(DeadlineExceeded):
            async with engine.begin() as connection:
                await connection.execute(text("INSERT INTO public.deadline_probe VALUES (1)"))
    finally:
        deadlines.reset(token)
    async with engine.begin() as connection:
        rows = (
            await connection.execute(text("SELECT count(*) FROM public.deadline_probe"))
        ).scalar_one()
        await connection.execute(text("DROP TABLE public.deadline_probe"))
    assert rows == 0


async def test_waiting_for_a_pooled_connection_is_bounded_and_unavailable(
    settings: Settings, services: dict[str, str], instructor: User, course: dict[str, Any]
) -> None:
    async with (
        # The one connection is also borrowed, briefly, by the server's own background work (the
        # outbox relay's poll, the health probe, the backlog gauge's sample): a wait of 1 s
        # outlasts those, never the held-up update; the gauge samples once, at start.
        grpc_service(
            "catalog",
            settings,
            db_pool_size=1,
            db_max_overflow=0,
            db_pool_timeout_s=1.0,
            metrics_sample_interval_s=3600,
        ) as target,
        grpc.aio.insecure_channel(target) as channel,
    ):
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        async with course_row_locked(settings.database_url, course["id"]):
            held = asyncio.ensure_future(
                stub.UpdateCourse(
                    update_request(course["id"], "Held"), metadata=auth(instructor), timeout=30
                )
            )
            await until_blocked(settings.database_url)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetCourse(
                    catalog_pb2.GetCourseRequest(course_id=course["id"]),
                    metadata=auth(instructor),
                    timeout=10,
                )
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert (await held).course.title == "Held"


async def test_a_deadline_does_not_outlive_its_request_on_a_kept_alive_connection(
    settings: Settings, services: dict[str, str], instructor: User
) -> None:
    # asyncio can carry one request's context variables into the next request on the same
    # connection (cpython#140947); an inherited deadline, expired by then, failed it with 504.
    async with gateway(settings, request_deadline_s=0.5) as http:
        # A body past uvicorn's read high-water mark: reading pauses, and resumes from inside
        # this request's task once it has answered (where the context is carried over).
        first = await http.post(
            "/api/courses/",
            json={"title": "t" * 200_000, "short_description": "d"},
            headers=instructor.headers,
        )
        assert_error_body(first, 400, "title")
        await asyncio.sleep(0.8)
        ready = await http.get("/readyz/")
        assert ready.status_code == 200, ready.text
        again = await http.get("/api/courses/", headers=instructor.headers)
        assert again.status_code == 200, again.text
