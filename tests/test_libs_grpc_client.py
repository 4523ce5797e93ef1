"""Client channels (libs/grpc_client.py) against real loopback servers: round_robin over every
address of a target, no picks for a replica reporting NOT_SERVING, retries on UNAVAILABLE for
read-only RPCs only, keepalive noticing a peer that went silent, and the read-only list agreeing
with the protos."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from courseplatform.catalog.v1 import catalog_pb2
from courseplatform.identity.v1 import identity_pb2
from courseplatform.learning.v1 import learning_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from libs import grpc_client
from libs.grpc_client import READ_ONLY_RPCS, open_channel
from libs.grpc_server import server_options

CATALOG = "courseplatform.catalog.v1.CatalogService"


class Replica:
    """A grpc.aio server with the platform's server options, a health service and generic
    CatalogService methods answering raw bytes; it counts the calls it received."""

    def __init__(self, name: str, fail_first_attempts: bool = False) -> None:
        self.name = name
        self.calls: Counter[str] = Counter()
        self._fail_first = fail_first_attempts
        self.release = asyncio.Event()
        self.release.set()

    def _handler(self, method: str) -> grpc.RpcMethodHandler:
        async def behave(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            self.calls[method] += 1
            await self.release.wait()
            if self._fail_first and self.calls[method] % 2 == 1:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "try another replica")
            return self.name.encode()

        return grpc.unary_unary_rpc_method_handler(behave)

    async def start(self) -> str:
        self.server = grpc.aio.server(options=server_options())
        methods = ("GetCourse", "ListCourses", "CreateCourse", "DeleteCourse")
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(CATALOG, {m: self._handler(m) for m in methods}),)
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return f"127.0.0.1:{self.port}"

    async def stop(self) -> None:
        await self.server.stop(0)


@pytest.fixture
async def replicas() -> AsyncIterator[list[Replica]]:
    started = [Replica("a"), Replica("b")]
    for replica in started:
        await replica.start()
    yield started
    for replica in started:
        await replica.stop()


def call(channel: grpc.aio.Channel, method: str) -> Callable[..., grpc.aio.UnaryUnaryCall]:
    return channel.unary_unary(f"/{CATALOG}/{method}")


async def test_calls_spread_over_every_address_of_an_ipv4_target(replicas: list[Replica]) -> None:
    target = "ipv4:" + ",".join(f"127.0.0.1:{replica.port}" for replica in replicas)
    channel = open_channel(target, default_timeout_s=5)
    try:
        answers = Counter([(await call(channel, "GetCourse")(b"")).decode() for _ in range(40)])
    finally:
        await channel.close()
    # pick_first (gRPC's default) would send all 40 to one replica.
    assert answers["a"] >= 10 and answers["b"] >= 10, answers
    assert answers == Counter({r.name: r.calls["GetCourse"] for r in replicas})


@pytest.mark.parametrize("form", ["{host}:{port}", "dns:///{host}:{port}", "ipv4:{host}:{port}"])
async def test_every_target_form_reaches_the_server(replicas: list[Replica], form: str) -> None:
    channel = open_channel(form.format(host="127.0.0.1", port=replicas[0].port), 5)
    try:
        assert await call(channel, "GetCourse")(b"") == b"a"
    finally:
        await channel.close()


async def test_a_replica_reporting_not_serving_gets_no_new_calls(replicas: list[Replica]) -> None:
    a, b = replicas
    target = f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}"
    channel = open_channel(target, default_timeout_s=5)
    try:
        for _ in range(10):
            await call(channel, "GetCourse")(b"")
        assert a.calls["GetCourse"] > 0
        # What a SIGTERM'd GrpcServer does first (libs/grpc_server.py stop()).
        await a.health.enter_graceful_shutdown()
        await asyncio.sleep(0.3)  # the status travels on the client's Watch stream
        before = a.calls["GetCourse"]
        answers = Counter([(await call(channel, "GetCourse")(b"")).decode() for _ in range(20)])
    finally:
        await channel.close()
    assert answers == Counter({"b": 20})
    assert a.calls["GetCourse"] == before


async def test_read_only_rpcs_are_retried_on_unavailable_and_writes_are_not() -> None:
    # Answers UNAVAILABLE to every first attempt (odd-numbered call) of each method.
    flaky = Replica("flaky", fail_first_attempts=True)
    target = await flaky.start()
    channel = open_channel(target, default_timeout_s=5)
    try:
        for _ in range(3):
            assert await call(channel, "GetCourse")(b"") == b"flaky"
            assert await call(channel, "ListCourses")(b"") == b"flaky"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(channel, "CreateCourse")(b"")
    finally:
        await channel.close()
        await flaky.stop()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert flaky.calls == Counter({"GetCourse": 6, "ListCourses": 6, "CreateCourse": 1})


class SilentRelay:
    """A TCP relay that can go silent without closing anything: what a vanished node (or a
    network partition) looks like to the client."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream = upstream_port
        self.silent = asyncio.Event()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if not self.silent.is_set():  # silent: swallow everything
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self._upstream
        )
        await asyncio.gather(
            self._pump(reader, upstream_writer), self._pump(upstream_reader, writer)
        )

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def fast_keepalive(monkeypatch: pytest.MonkeyPatch) -> None:
    # The production values take ~25 s to fire; the mechanism is the same at 1 s.
    monkeypatch.setattr(grpc_client, "KEEPALIVE_TIME_MS", 1_000)
    monkeypatch.setattr(grpc_client, "KEEPALIVE_TIMEOUT_MS", 1_000)


async def test_keepalive_notices_an_idle_connection_whose_peer_went_silent(
    replicas: list[Replica], fast_keepalive: None
) -> None:
    relay = SilentRelay(replicas[0].port)
    channel = open_channel(f"127.0.0.1:{await relay.start()}", default_timeout_s=20)
    try:
        assert await call(channel, "GetCourse")(b"") == b"a"
        assert channel.get_state() is grpc.ChannelConnectivity.READY
        relay.silent.set()
        deadline = time.monotonic() + 10
        while channel.get_state() is grpc.ChannelConnectivity.READY:
            assert time.monotonic() < deadline, "the channel still trusts the silent peer"
            await asyncio.sleep(0.1)
    finally:
        await channel.close()
        relay.close()


async def test_a_call_on_a_connection_whose_peer_went_silent_fails_fast(
    replicas: list[Replica], fast_keepalive: None
) -> None:
    relay = SilentRelay(replicas[0].port)
    channel = open_channel(f"127.0.0.1:{await relay.start()}", default_timeout_s=20)
    try:
        assert await call(channel, "CreateCourse")(b"") == b"a"
        relay.silent.set()
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(channel, "CreateCourse")(b"")
        elapsed = time.monotonic() - started
    finally:
        await channel.close()
        relay.close()
    # Without the ping timeouts the call would hang until its 20 s deadline (DEADLINE_EXCEEDED).
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value
    assert elapsed < 10, elapsed


@pytest.mark.parametrize(
    ("options", "accepted"), [(server_options, True), (list, False)], ids=["ours", "grpc-default"]
)
async def test_the_server_accepts_the_clients_keepalive_rate(
    fast_keepalive: None, options: Callable[[], list[tuple[str, int]]], accepted: bool
) -> None:
    """An idle channel pinging at the client's rate keeps its connection to our servers; grpc's
    default server policy answers the same pings with GOAWAY too_many_pings (after ~3 s here)."""
    server = grpc.aio.server(options=options())
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = open_channel(f"127.0.0.1:{port}", default_timeout_s=5)
    try:
        await channel.channel_ready()
        try:
            await asyncio.wait_for(
                channel.wait_for_state_change(grpc.ChannelConnectivity.READY), timeout=5
            )
            kept = False
        except TimeoutError:
            kept = True
    finally:
        await channel.close()
        await server.stop(0)
    assert kept is accepted


def test_read_only_rpcs_follow_the_rule_and_exist_in_the_protos() -> None:
    """Get*/List* and VerifyToken, per service; a new RPC must be placed on one side."""
    descriptors = [
        identity_pb2.DESCRIPTOR.services_by_name["IdentityService"],
        catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"],
        learning_pb2.DESCRIPTOR.services_by_name["LearningService"],
    ]
    for service in descriptors:
        methods = {method.name for method in service.methods}
        readers = {name for name in methods if name.startswith(("Get", "List"))}
        if service.name == "IdentityService":
            readers.update({"VerifyToken", "VerifyRefreshToken"})
        assert READ_ONLY_RPCS[service.full_name] == readers, service.full_name
    assert READ_ONLY_RPCS["grpc.health.v1.Health"] == {"Check"}
    assert set(READ_ONLY_RPCS) == {d.full_name for d in descriptors} | {"grpc.health.v1.Health"}


async def test_health_check_is_retried_too(replicas: list[Replica]) -> None:
    channel = open_channel(f"127.0.0.1:{replicas[0].port}", default_timeout_s=5)
    try:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    finally:
        await channel.close()
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_connections_are_renewed_by_age_without_failing_a_call() -> None:
    """Servers close connections past a maximum age (so clients re-resolve `dns:///` targets and
    find replicas added since); calls across those renewals all succeed."""
    peers: list[str] = []

    async def behave(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        peers.append(context.peer())  # the client's address: a new port for a new connection
        return b"ok"

    server = grpc.aio.server(options=server_options(max_connection_age_ms=300))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                CATALOG, {"GetCourse": grpc.unary_unary_rpc_method_handler(behave)}
            ),
        )
    )
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = open_channel(f"127.0.0.1:{port}", default_timeout_s=5)
    try:
        for _ in range(25):
            assert await call(channel, "GetCourse")(b"") == b"ok"
            await asyncio.sleep(0.08)
    finally:
        await channel.close()
        await server.stop(0)
    assert len(set(peers)) >= 2, "the connection was never renewed"
