"""The shared gRPC server bootstrap (libs/grpc_server.py) and client channel (libs/grpc_client.py)
around a small probe service on a real loopback server: auth, request ids, domain errors as rich
statuses, no leaks on crashes, streaming fails closed, graceful stop."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf.wrappers_pb2 import StringValue
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs import call_context
from libs.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from libs.grpc_client import open_channel
from libs.grpc_errors import as_domain_error, decode_rpc_error
from libs.grpc_server import GrpcServer, ServiceDefinition
from libs.settings import Settings
from libs.tokens import issuer_from_settings, verifier_from_settings

SERVICE = "courseplatform.probe.v1.ProbeService"

ERRORS: dict[str, tuple[DomainError, grpc.StatusCode]] = {
    "invalid": (
        InvalidArgument("Validation error", {"title": ["Too long.", "Not unique."]}),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "precondition": (
        FailedPrecondition.on_field("status", "Only drafts can be published."),
        grpc.StatusCode.FAILED_PRECONDITION,
    ),
    "not-found": (NotFound("Course not found."), grpc.StatusCode.NOT_FOUND),
    "denied": (PermissionDenied(), grpc.StatusCode.PERMISSION_DENIED),
    "unauthenticated": (Unauthenticated(), grpc.StatusCode.UNAUTHENTICATED),
    "unavailable": (Unavailable(), grpc.StatusCode.UNAVAILABLE),
}


class Probe:
    """Behaviours of the probe service, recording what the server did around them."""

    def __init__(self) -> None:
        self.stopped = False
        self.background_runs = 0
        self.background_cancelled = False
        self.release_slow = asyncio.Event()

    async def echo(self, request: StringValue, context: grpc.aio.ServicerContext) -> StringValue:
        return StringValue(value=call_context.request_id.get() or "")

    async def who_am_i(
        self, request: StringValue, context: grpc.aio.ServicerContext
    ) -> StringValue:
        return StringValue(value=str(call_context.current_claims().user_id))

    async def fail(self, request: StringValue, context: grpc.aio.ServicerContext) -> StringValue:
        if request.value == "crash":
            raise RuntimeError("SELECT secret FROM internals -- must never reach a client")
        if request.value == "abort":
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, "aborted on purpose")
        raise ERRORS[request.value][0]

    async def slow(self, request: StringValue, context: grpc.aio.ServicerContext) -> StringValue:
        await asyncio.wait_for(self.release_slow.wait(), timeout=10)
        return StringValue(value="finished")

    async def stream(
        self, request: StringValue, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[StringValue]:
        yield StringValue(value="unchecked")

    async def background(self) -> None:
        self.background_runs += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.background_cancelled = True
            raise

    async def on_stop(self) -> None:
        self.stopped = True


def unary(behaviour: Callable[..., Awaitable[Any]]) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        behaviour,
        request_deserializer=StringValue.FromString,
        response_serializer=StringValue.SerializeToString,
    )


def definition(probe: Probe) -> ServiceDefinition:
    handlers = {
        "Echo": unary(probe.echo),
        "WhoAmI": unary(probe.who_am_i),
        "Fail": unary(probe.fail),
        "Slow": unary(probe.slow),
        "Stream": grpc.unary_stream_rpc_method_handler(
            probe.stream,
            request_deserializer=StringValue.FromString,
            response_serializer=StringValue.SerializeToString,
        ),
    }

    def register(server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))

    return ServiceDefinition(
        full_name=SERVICE,
        register=register,
        public_methods=frozenset({"Echo", "Fail", "Slow", "Stream"}),
        background_tasks=[probe.background],
        on_stop=probe.on_stop,
    )


@pytest.fixture
async def probe_server(settings: Settings) -> AsyncIterator[tuple[Probe, GrpcServer, str]]:
    probe = Probe()
    server = GrpcServer(
        definition(probe), verifier_from_settings(settings), port=0, shutdown_grace_s=5
    )
    port = await server.start()
    yield probe, server, f"127.0.0.1:{port}"
    probe.release_slow.set()
    if not probe.stopped:
        await server.stop()


def method(channel: grpc.aio.Channel, name: str) -> grpc.aio.UnaryUnaryMultiCallable:
    return channel.unary_unary(
        f"/{SERVICE}/{name}",
        request_serializer=StringValue.SerializeToString,
        response_deserializer=StringValue.FromString,
    )


def access_token(settings: Settings, user_id: int = 7) -> str:
    return issuer_from_settings(settings).issue_access(
        user_id=user_id, role="Student", email="p@example.com", full_name="P"
    )


async def test_public_method_needs_no_token_and_sees_the_request_id(
    probe_server: tuple[Probe, GrpcServer, str],
) -> None:
    _, _, target = probe_server
    async with grpc.aio.insecure_channel(target) as channel:
        echoed = await method(channel, "Echo")(
            StringValue(), metadata=(("x-request-id", "req-123"),), timeout=5
        )
        generated = await method(channel, "Echo")(StringValue(), timeout=5)
    assert echoed.value == "req-123"
    assert re.fullmatch(r"[0-9a-f]{32}", generated.value)


async def test_private_method_verifies_the_access_token(
    probe_server: tuple[Probe, GrpcServer, str], settings: Settings
) -> None:
    _, _, target = probe_server
    refresh, _ = issuer_from_settings(settings).issue_refresh(user_id=7, jti="x")
    async with grpc.aio.insecure_channel(target) as channel:
        who = method(channel, "WhoAmI")
        for metadata in ((), (("authorization", f"Bearer {refresh}"),)):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await who(StringValue(), metadata=metadata, timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        reply = await who(
            StringValue(),
            metadata=(("authorization", f"Bearer {access_token(settings, 7)}"),),
            timeout=5,
        )
    assert reply.value == "7"


@pytest.mark.parametrize("kind", list(ERRORS))
async def test_domain_errors_travel_as_rich_statuses(
    probe_server: tuple[Probe, GrpcServer, str], kind: str
) -> None:
    _, _, target = probe_server
    error, code = ERRORS[kind]
    async with grpc.aio.insecure_channel(target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await method(channel, "Fail")(StringValue(value=kind), timeout=5)
    failure = decode_rpc_error(caught.value)
    assert failure.code == code
    assert failure.message == error.message
    assert failure.field_errors == error.field_errors
    # A caller re-raising the failure gets the same kind of error back.
    again = as_domain_error(caught.value)
    assert type(again) is type(error)
    assert again.field_errors == error.field_errors


async def test_a_crash_is_internal_and_tells_nothing(
    probe_server: tuple[Probe, GrpcServer, str],
) -> None:
    _, _, target = probe_server
    async with grpc.aio.insecure_channel(target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await method(channel, "Fail")(StringValue(value="crash"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == "Internal error"
    assert "secret" not in str(caught.value.trailing_metadata())
    # Downstream, a crash is the callee's problem: it surfaces as Unavailable (503), not 400.
    assert isinstance(as_domain_error(caught.value), Unavailable)


async def test_an_abort_by_the_servicer_keeps_its_code(
    probe_server: tuple[Probe, GrpcServer, str],
) -> None:
    _, _, target = probe_server
    async with grpc.aio.insecure_channel(target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await method(channel, "Fail")(StringValue(value="abort"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert caught.value.details() == "aborted on purpose"


async def test_streaming_methods_fail_closed(probe_server: tuple[Probe, GrpcServer, str]) -> None:
    """The auth check wraps unary calls; a stream must not slip past it unchecked."""
    _, _, target = probe_server
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_stream(
            f"/{SERVICE}/Stream",
            request_serializer=StringValue.SerializeToString,
            response_deserializer=StringValue.FromString,
        )(StringValue(), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in call:
                pass
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_health_reports_serving_for_the_server_and_the_service(
    probe_server: tuple[Probe, GrpcServer, str],
) -> None:
    _, _, target = probe_server
    async with grpc.aio.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", SERVICE):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_background_tasks_run_with_the_server(
    probe_server: tuple[Probe, GrpcServer, str],
) -> None:
    probe, server, _ = probe_server
    await asyncio.sleep(0)
    assert probe.background_runs == 1
    await server.stop()
    assert probe.background_cancelled
    assert probe.stopped


async def test_stop_lets_in_flight_calls_finish_and_refuses_new_ones(
    probe_server: tuple[Probe, GrpcServer, str],
) -> None:
    probe, server, target = probe_server
    async with grpc.aio.insecure_channel(target) as channel:
        in_flight = asyncio.ensure_future(method(channel, "Slow")(StringValue(), timeout=10))
        await asyncio.sleep(0.2)  # the call is inside the servicer now
        stopping = asyncio.create_task(server.stop())
        await asyncio.sleep(0.2)
        assert not stopping.done()  # waiting for the in-flight call, within the grace period
        probe.release_slow.set()
        assert (await in_flight).value == "finished"
        await stopping
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await method(channel, "Echo")(StringValue(), timeout=2)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert probe.stopped


async def test_stop_ends_health_watches_instead_of_waiting_out_the_grace(
    probe_server: tuple[Probe, GrpcServer, str],
) -> None:
    """Client channels keep a health Watch open on every replica; a stopping server tells each
    watcher NOT_SERVING and closes the stream, so it does not wait the grace (5 s here) for them."""
    _, server, target = probe_server
    balanced = open_channel(target, default_timeout_s=5)  # watches the server's health
    async with grpc.aio.insecure_channel(target) as plain:
        watch = health_pb2_grpc.HealthStub(plain).Watch(health_pb2.HealthCheckRequest(service=""))
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        await method(balanced, "Echo")(StringValue())  # the channel is connected and watching
        started = asyncio.get_running_loop().time()
        await server.stop()
        took = asyncio.get_running_loop().time() - started
        statuses = []
        while (reply := await watch.read()) is not grpc.aio.EOF:
            statuses.append(reply.status)
        assert statuses[-1] == health_pb2.HealthCheckResponse.NOT_SERVING
        assert await watch.code() == grpc.StatusCode.OK
    await balanced.close()
    assert took < 2.5, f"stop waited {took:.1f} s for health watchers"


async def test_client_channel_forwards_token_and_request_id(
    probe_server: tuple[Probe, GrpcServer, str], settings: Settings
) -> None:
    _, _, target = probe_server
    request_token = call_context.request_id.set("forwarded-id-9")
    token_token = call_context.access_token.set(access_token(settings, 31))
    channel = open_channel(target, default_timeout_s=5)
    try:
        who = await method(channel, "WhoAmI")(StringValue())
        echoed = await method(channel, "Echo")(StringValue())
    finally:
        await channel.close()
        call_context.access_token.reset(token_token)
        call_context.request_id.reset(request_token)
    assert who.value == "31"
    assert echoed.value == "forwarded-id-9"


async def test_client_channel_applies_a_default_deadline(
    probe_server: tuple[Probe, GrpcServer, str],
) -> None:
    _, _, target = probe_server
    channel = open_channel(target, default_timeout_s=0.3)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await method(channel, "Slow")(StringValue())
    finally:
        await channel.close()
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # And a downstream timeout is Unavailable to the caller's own callers.
    assert isinstance(as_domain_error(caught.value), Unavailable)
