"""Login throttling (#14 item 1): failed logins per account and per client address, counted in
Redis and shared by every gateway and identity replica; 429 + Retry-After over REST,
RESOURCE_EXHAUSTED + google.rpc.RetryInfo over gRPC; checked before any password is hashed;
Redis down: counted in the replica's memory instead.

Two real `python -m gateway` processes trusting 127.0.0.1 as a proxy let each test pick its
client addresses with X-Forwarded-For (documentation prefixes, random per test), so the tests
never share an address's count with each other or with the rest of the suite.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import httpx
import pytest
from courseplatform.identity.v1 import identity_pb2, identity_pb2_grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from libs.client_address import CLIENT_ADDRESS_HEADER
from libs.embedded import free_port
from libs.settings import Settings
from tests.conftest import TEST_PASSWORD, assert_error_body, serve_asgi, unique_email
from tests.process_support import PlatformProcess, gateway

WINDOW_S = 900  # the defaults the suite's identity runs with
ACCOUNT_MAX = 5
ADDRESS_MAX = 100


def new_address() -> str:
    """An address of the IPv6 documentation prefix no other test uses."""
    return f"2001:db8::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"


def via(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


@pytest.fixture(scope="module")
async def gateways(
    settings: Settings, services: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[list[httpx.AsyncClient]]:
    logs = tmp_path_factory.mktemp("throttling-logs")
    targets = {f"{name}_target": target for name, target in services.items()}
    processes: list[PlatformProcess] = [
        gateway(settings, logs, trusted_proxies="127.0.0.1", **targets) for _ in range(2)
    ]
    try:
        await asyncio.gather(*(process.start() for process in processes))
        await asyncio.gather(*(process.wait_ready(60) for process in processes))
        clients = [httpx.AsyncClient(base_url=p.url, timeout=30) for p in processes]
        yield clients
        for client in clients:
            await client.aclose()
    finally:
        await asyncio.gather(*(process.stop() for process in processes))


async def registered(http: httpx.AsyncClient) -> str:
    email = unique_email("throttled")
    body = {
        "email": email,
        "full_name": "Tess Throttle",
        "role": "Student",
        "password": TEST_PASSWORD,
        "password_confirm": TEST_PASSWORD,
    }
    response = await http.post("/api/register/", json=body)
    assert response.status_code == 201, response.text
    return email


async def log_in(
    http: httpx.AsyncClient, email: str, password: str, address: str
) -> httpx.Response:
    return await http.post(
        "/api/auth/login/", json={"email": email, "password": password}, headers=via(address)
    )


def retry_after(response: httpx.Response) -> int:
    assert_error_body(response, 429)
    assert response.json()["message"] == "Too many failed login attempts. Try again later."
    value = response.headers["Retry-After"]
    assert value.isdigit(), value  # whole seconds
    return int(value)


async def test_sixth_attempt_after_five_failures_is_429_on_every_gateway(
    gateways: list[httpx.AsyncClient],
) -> None:
    email = await registered(gateways[0])
    address = new_address()
    for attempt in range(ACCOUNT_MAX):
        wrong = await log_in(gateways[attempt % 2], email, "wrong-password-1", address)
        assert wrong.status_code == 401, wrong.text

    # The right password now, on both gateways, and from another address too: the account's
    # count is shared through Redis, whoever asks.
    answers = [
        await log_in(gateways[0], email, TEST_PASSWORD, address),
        await log_in(gateways[1], email, TEST_PASSWORD, address),
        await log_in(gateways[1], email, TEST_PASSWORD, new_address()),
    ]
    waits = [retry_after(answer) for answer in answers]
    assert all(WINDOW_S - 60 <= wait <= WINDOW_S for wait in waits), waits
    assert max(waits) - min(waits) <= 2, waits


async def test_an_address_is_throttled_after_a_hundred_failures_over_any_accounts(
    gateways: list[httpx.AsyncClient],
) -> None:
    email = await registered(gateways[0])
    address = new_address()
    semaphore = asyncio.Semaphore(4)

    async def fail(turn: int) -> int:
        async with semaphore:
            answer = await log_in(
                gateways[turn % 2], unique_email("nobody"), "wrong-password-1", address
            )
            return answer.status_code

    statuses = await asyncio.gather(*(fail(turn) for turn in range(ADDRESS_MAX)))
    assert set(statuses) == {401}

    # A valid login from that address is refused on both gateways; from elsewhere it works.
    for http in gateways:
        assert 1 <= retry_after(await log_in(http, email, TEST_PASSWORD, address)) <= WINDOW_S
    elsewhere = await log_in(gateways[1], email, TEST_PASSWORD, new_address())
    assert elsewhere.status_code == 200, elsewhere.text


async def test_a_successful_login_clears_the_account_count_but_never_counts_itself(
    gateways: list[httpx.AsyncClient],
) -> None:
    email = await registered(gateways[0])
    address = new_address()
    for _ in range(3):
        for _ in range(ACCOUNT_MAX - 1):
            wrong = await log_in(gateways[0], email, "wrong-password-1", address)
            assert wrong.status_code == 401, wrong.text
        right = await log_in(gateways[1], email, TEST_PASSWORD, address)
        assert right.status_code == 200, right.text
    # Successful logins from one address never add up to its limit.
    for _ in range(ADDRESS_MAX // 10):
        assert (await log_in(gateways[0], email, TEST_PASSWORD, address)).status_code == 200


async def test_parallel_successful_logins_of_one_account_are_not_throttled(
    gateways: list[httpx.AsyncClient],
) -> None:
    # The bench's login scenario: many connections logging one account in at once.
    email = await registered(gateways[0])
    address = new_address()
    answers = await asyncio.gather(
        *(log_in(gateways[turn % 2], email, TEST_PASSWORD, address) for turn in range(20))
    )
    assert [answer.status_code for answer in answers] == [200] * 20


async def test_forwarded_for_counts_only_from_trusted_proxies(settings: Settings) -> None:
    # Its own identity with an address limit of 3 (the limit is part of the Redis key, so this
    # count of 127.0.0.1 is not the suite's), and two gateways in front of it.
    async with (
        own_identity(settings, login_ip_max_failures=3) as own,
        own_gateway(own, trusted_proxies="") as untrusting,
        own_gateway(own, trusted_proxies="127.0.0.1") as trusting,
    ):
        email = await registered(untrusting)
        # Through the gateway that trusts no proxy, every request is 127.0.0.1, whatever
        # X-Forwarded-For says: the fourth is refused.
        for _ in range(3):
            wrong = await log_in(untrusting, unique_email("x"), "wrong-pass-1", new_address())
            assert wrong.status_code == 401, wrong.text
        assert retry_after(await log_in(untrusting, email, TEST_PASSWORD, new_address()))
        # Through the one that trusts 127.0.0.1, the header names the client.
        for _ in range(3):
            wrong = await log_in(trusting, unique_email("x"), "wrong-pass-1", new_address())
            assert wrong.status_code == 401, wrong.text
        assert (await log_in(trusting, email, TEST_PASSWORD, new_address())).status_code == 200


async def test_grpc_login_answers_resource_exhausted_with_retry_info(
    services: dict[str, str],
) -> None:
    email = unique_email("grpc-throttled")
    async with grpc.aio.insecure_channel(services["identity"]) as channel:
        identity = identity_pb2_grpc.IdentityServiceStub(channel)
        await identity.Register(
            identity_pb2.RegisterRequest(
                email=email,
                full_name="Gina Grpc",
                role=identity_pb2.ROLE_STUDENT,
                password=TEST_PASSWORD,
                password_confirm=TEST_PASSWORD,
            )
        )
        # 127.0.0.1 is a trusted gateway, so the test may name the client like the gateway does.
        metadata = ((CLIENT_ADDRESS_HEADER, new_address()),)
        for _ in range(ACCOUNT_MAX):
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await identity.Login(
                    identity_pb2.LoginRequest(email=email, password="wrong-password-1"),
                    metadata=metadata,
                )
            assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as throttled:
            await identity.Login(
                identity_pb2.LoginRequest(email=email, password=TEST_PASSWORD),
                metadata=metadata,
            )
    error = throttled.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(error)
    assert status is not None
    [detail] = status.details
    retry = error_details_pb2.RetryInfo()
    assert detail.Unpack(retry)
    assert WINDOW_S - 60 <= retry.retry_delay.seconds <= WINDOW_S


@asynccontextmanager
async def own_identity(settings: Settings, **changes: object) -> AsyncIterator[Settings]:
    """An identity server of the test's own (in this process) with `changes` to its settings;
    yields the settings, pointing at it."""
    from services.identity.server import build_server

    port = free_port()
    own = settings.model_copy(
        update={"identity_port": port, "identity_target": f"127.0.0.1:{port}", **changes}
    )
    server = build_server(own)
    await server.start()
    try:
        yield own
    finally:
        await server.stop()


@asynccontextmanager
async def own_gateway(own: Settings, **changes: object) -> AsyncIterator[httpx.AsyncClient]:
    from gateway.app import create_app
    from gateway.serving import uvicorn_options

    app = create_app(own.model_copy(update=changes))
    async with (
        serve_asgi(app, **uvicorn_options()) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        yield http


async def test_throttled_attempts_hash_nothing(
    settings: Settings, services: dict[str, str]
) -> None:
    # argon2 made ~10x dearer, so a hashed attempt is unmistakable next to a refused one.
    async with (
        own_identity(settings, argon2_time_cost=20) as own,
        own_gateway(own, trusted_proxies="127.0.0.1") as http,
    ):
        email = await registered(http)
        address = new_address()
        started = time.perf_counter()
        for _ in range(ACCOUNT_MAX):
            assert (await log_in(http, email, "wrong-password-1", address)).status_code == 401
        hashed_s = (time.perf_counter() - started) / ACCOUNT_MAX

        started = time.perf_counter()
        refusals = [await log_in(http, email, TEST_PASSWORD, address) for _ in range(10)]
        refused_s = (time.perf_counter() - started) / len(refusals)
        assert all(retry_after(answer) for answer in refusals)
        # Checked before hashing: a refusal costs a small fraction of one argon2 verify.
        assert refused_s < hashed_s / 3, (refused_s, hashed_s)


async def test_the_window_lets_an_account_go(settings: Settings, services: dict[str, str]) -> None:
    window_s = 5
    async with (
        own_identity(settings, login_window_s=window_s) as own,
        own_gateway(own, trusted_proxies="127.0.0.1") as http,
    ):
        email = await registered(http)
        address = new_address()
        for _ in range(ACCOUNT_MAX):
            assert (await log_in(http, email, "wrong-password-1", address)).status_code == 401
        wait = retry_after(await log_in(http, email, TEST_PASSWORD, address))
        assert 1 <= wait <= window_s
        await asyncio.sleep(wait)
        let_go = await log_in(http, email, TEST_PASSWORD, address)
        assert let_go.status_code == 200, let_go.text


async def test_with_redis_down_each_replica_still_counts(
    settings: Settings, services: dict[str, str]
) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    async with (
        own_identity(settings, redis_url=dead_redis) as down,
        grpc.aio.insecure_channel(down.identity_target) as channel,
    ):
        identity = identity_pb2_grpc.IdentityServiceStub(channel)
        emails = [unique_email("redis-down") for _ in range(2)]
        for email in emails:
            await identity.Register(
                identity_pb2.RegisterRequest(
                    email=email,
                    full_name="Rudi Redis",
                    role=identity_pb2.ROLE_STUDENT,
                    password=TEST_PASSWORD,
                    password_confirm=TEST_PASSWORD,
                )
            )
        # Fail open to memory: logins still work...
        await identity.Login(identity_pb2.LoginRequest(email=emails[1], password=TEST_PASSWORD))
        for _ in range(ACCOUNT_MAX):
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await identity.Login(
                    identity_pb2.LoginRequest(email=emails[0], password="wrong-password-1")
                )
            assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # ...and guessing is still limited, by this replica's own count.
        with pytest.raises(grpc.aio.AioRpcError) as throttled:
            await identity.Login(identity_pb2.LoginRequest(email=emails[0], password=TEST_PASSWORD))
        assert throttled.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
