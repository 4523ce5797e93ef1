"""The opt-in SQL statement counter: a service reports its count as a trailer, a counted caller
adds its downstream calls' counts, the gateway answers the total as a header; off means silent."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from courseplatform.identity.v1 import identity_pb2, identity_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs import sql_counting
from libs.embedded import free_port
from libs.grpc_client import open_channel
from libs.grpc_server import GrpcServer
from libs.settings import Settings
from services.identity.server import build_server
from tests.conftest import TEST_PASSWORD, serve_asgi


@pytest.fixture
async def counting_settings(settings: Settings) -> AsyncIterator[Settings]:
    """A copy of the suite's settings with counting on (for the servers built from it only)."""
    port = free_port()
    yield settings.model_copy(
        update={
            "sql_statement_counting": True,
            "identity_port": port,
            "identity_target": f"127.0.0.1:{port}",
        }
    )


@pytest.fixture
async def counting_identity(counting_settings: Settings) -> AsyncIterator[str]:
    server: GrpcServer = build_server(counting_settings)
    await server.start()
    yield counting_settings.identity_target
    await server.stop()


def register_request() -> identity_pb2.RegisterRequest:
    return identity_pb2.RegisterRequest(
        email=f"count-{uuid.uuid4().hex[:10]}@example.com",
        full_name="Counted User",
        role=identity_pb2.ROLE_STUDENT,
        password=TEST_PASSWORD,
        password_confirm=TEST_PASSWORD,
    )


async def test_service_reports_its_statements_as_a_trailer(counting_identity: str) -> None:
    async with grpc.aio.insecure_channel(counting_identity) as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        call = stub.Register(register_request())
        await call
        count = sql_counting.from_metadata(await call.trailing_metadata())
    # At least the uniqueness check or the insert; exactly how many is the service's business.
    assert count >= 1


async def test_counted_caller_adds_downstream_statements(counting_identity: str) -> None:
    channel = open_channel(counting_identity, 5.0, count_sql_statements=True)
    stub = identity_pb2_grpc.IdentityServiceStub(channel)
    try:
        outside = stub.Register(register_request())
        await outside
        counter, token = sql_counting.start()
        try:
            first = stub.Register(register_request())
            await first
            second = stub.Register(register_request())
            await second
        finally:
            sql_counting.stop(token)
        reported = [
            sql_counting.from_metadata(await call.trailing_metadata()) for call in (first, second)
        ]
    finally:
        await channel.close()
    assert all(value >= 1 for value in reported)
    assert counter.value == sum(reported)


async def test_failed_downstream_call_still_reaches_its_caller(counting_identity: str) -> None:
    channel = open_channel(counting_identity, 5.0, count_sql_statements=True)
    stub = identity_pb2_grpc.IdentityServiceStub(channel)
    counter, token = sql_counting.start()
    try:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await stub.Login(identity_pb2.LoginRequest(email="nobody@example.com", password="x"))
    finally:
        sql_counting.stop(token)
        await channel.close()
    assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert counter.value == 0  # failed calls report no trailer; nothing is made up


async def test_gateway_answers_the_total_as_a_header(
    counting_settings: Settings, counting_identity: str
) -> None:
    from gateway.app import create_app

    email = f"count-{uuid.uuid4().hex[:10]}@example.com"
    async with (
        serve_asgi(create_app(counting_settings)) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        registered = await http.post(
            "/api/register/",
            json={
                "email": email,
                "full_name": "Counted User",
                "role": "Student",
                "password": TEST_PASSWORD,
                "password_confirm": TEST_PASSWORD,
            },
        )
        verified = await http.post("/api/token/verify/", json={"token": "not-a-token"})
    assert registered.status_code == 201, registered.text
    assert int(registered.headers[sql_counting.HEADER]) >= 1
    # Token verification happens in the gateway itself: no backend call, no statement.
    assert verified.headers[sql_counting.HEADER] == "0"


async def test_a_channel_without_counting_adds_nothing(counting_identity: str) -> None:
    """The client interceptor exists only on channels opened with counting on."""
    channel = open_channel(counting_identity, 5.0)
    stub = identity_pb2_grpc.IdentityServiceStub(channel)
    counter, token = sql_counting.start()
    try:
        call = stub.Register(register_request())
        await call
        reported = sql_counting.from_metadata(await call.trailing_metadata())
    finally:
        sql_counting.stop(token)
        await channel.close()
    assert reported >= 1  # the counting server still answers its trailer
    assert counter.value == 0


async def test_health_checks_of_a_counting_server_carry_no_count(counting_identity: str) -> None:
    async with grpc.aio.insecure_channel(counting_identity) as channel:
        call = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        await call
        trailers = await call.trailing_metadata()
    assert sql_counting.HEADER not in dict(trailers or ())


async def test_counting_is_off_by_default(services: dict[str, str]) -> None:
    async with grpc.aio.insecure_channel(services["identity"]) as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        call = stub.Register(register_request())
        await call
        trailers = await call.trailing_metadata()
    assert sql_counting.HEADER not in dict(trailers or ())
