"""The grpc.aio server every service runs: its servicer plus health, reflection, auth, request
ids, access logs, domain-error translation and graceful shutdown on SIGTERM.

A service describes itself with a `ServiceDefinition`; `GrpcServer` does the rest, so each
service's server.py stays a few lines long.
"""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from libs import call_context, grpc_client, sql_counting
from libs.errors import DomainError, Unauthenticated
from libs.grpc_errors import abort_with, grpc_code_for
from libs.logging import get_logger
from libs.tokens import TokenVerifier

log = get_logger("grpc")


def server_options() -> list[tuple[str, int]]:
    return [
        # grpc turns SO_REUSEPORT on by default: a second process on a taken port then shares it
        # silently (and takes half the connections). Off, binding a taken port fails.
        ("grpc.so_reuseport", 0),
        # Accept the clients' keepalive pings (libs/grpc_client.py), idle connections included;
        # grpc's default (pings on an idle connection at most every 2 h, otherwise every 5 min)
        # would GOAWAY them as too_many_pings.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", grpc_client.KEEPALIVE_TIME_MS // 2),
    ]


# How long a stopping server keeps serving after it reported NOT_SERVING: clients watching its
# health (libs/grpc_client.py) stop picking it meanwhile, so no new call races the stop (a call
# that reached the server just as it stopped was answered CANCELLED, a 499 for a write).
DRAIN_S = 0.5


class PortInUse(Exception):
    """The server's port is taken by another process."""


@dataclass
class ServiceDefinition:
    """What a service contributes to its server."""

    # Full proto service name, e.g. "courseplatform.identity.v1.IdentityService".
    full_name: str
    # Adds the servicer to a server (the generated add_XServicer_to_server, bound to a servicer).
    register: Callable[[grpc.aio.Server], None]
    # Method names (without the service prefix) that need no access token.
    public_methods: frozenset[str] = frozenset()
    # Started with the server (e.g. the outbox relay) and cancelled when it stops.
    background_tasks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Called after the server stopped serving (close pools, flush).
    on_stop: Callable[[], Awaitable[None]] | None = None


class CallContextInterceptor(grpc.aio.ServerInterceptor):
    """Wraps each unary call of the service: request id, token check, error translation, log."""

    def __init__(self, definition: ServiceDefinition, verifier: TokenVerifier) -> None:
        self._prefix = f"/{definition.full_name}/"
        self._public = definition.public_methods
        self._verifier = verifier

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method_path: str = handler_call_details.method  # type: ignore[attr-defined]
        if handler is None or not method_path.startswith(self._prefix):
            return handler
        if not handler.unary_unary:
            # Only unary calls get the token check below; a streaming method of the service
            # would run unchecked, so it is refused (UNIMPLEMENTED) until this learns streams.
            return None
        method = method_path.removeprefix(self._prefix)
        behavior = self._wrap(method, handler.unary_unary)
        return grpc.unary_unary_rpc_method_handler(
            behavior,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _wrap(
        self, method: str, behavior: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
    ) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
        needs_token = method not in self._public
        verifier = self._verifier

        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            metadata = {key: value for key, value in context.invocation_metadata() or ()}
            request_id = metadata.get(call_context.REQUEST_ID_HEADER) or (
                call_context.new_request_id()
            )
            tokens = [call_context.request_id.set(str(request_id))]
            counter = None
            if sql_counting.enabled():
                counter, counter_token = sql_counting.start()
                tokens.append(counter_token)
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            user_id: int | None = None
            try:
                if needs_token:
                    token = call_context.bearer_token(
                        metadata.get(call_context.AUTHORIZATION_HEADER)
                    )
                    if token is None:
                        raise Unauthenticated("Authentication credentials were not provided.")
                    claims = verifier.verify(token, "access")
                    user_id = claims.user_id
                    tokens.append(call_context.access_token.set(token))
                    tokens.append(call_context.claims.set(claims))
                response = await behavior(request, context)
                if counter is not None:
                    context.set_trailing_metadata(((sql_counting.HEADER, str(counter.value)),))
                return response
            except DomainError as error:
                code = grpc_code_for(error)
                await abort_with(context, error)
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception as error:
                if context.code() not in (None, grpc.StatusCode.OK):
                    code = context.code()  # the servicer aborted on purpose
                    raise
                code = grpc.StatusCode.INTERNAL
                log.exception("unhandled error", method=method, error=repr(error))
                await context.abort(grpc.StatusCode.INTERNAL, "Internal error")
            finally:
                log.info(
                    "rpc",
                    method=method,
                    code=code.name,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                    user_id=user_id,
                )
                for var_token in reversed(tokens):
                    var_token.var.reset(var_token)

        return wrapped


class GrpcServer:
    def __init__(
        self,
        definition: ServiceDefinition,
        verifier: TokenVerifier,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        shutdown_grace_s: float = 10.0,
    ) -> None:
        self.definition = definition
        self._host, self._port = host, port
        self._address = f"{host}:{port}"
        self._grace = shutdown_grace_s
        self._interceptor = CallContextInterceptor(definition, verifier)
        self._tasks: list[asyncio.Task[None]] = []
        self.port = 0

    async def start(self) -> int:
        # grpc.aio objects bind to the running loop, so they are made here, not in __init__.
        self._server = grpc.aio.server(interceptors=[self._interceptor], options=server_options())
        self._health = health.aio.HealthServicer()
        self.definition.register(self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (self.definition.full_name, reflection.SERVICE_NAME, health.SERVICE_NAME),
            self._server,
        )
        try:
            self.port = self._server.add_insecure_port(self._address)
        except RuntimeError:
            _raise_if_port_in_use(self._host, self._port)
            raise
        await self._server.start()
        serving = health_pb2.HealthCheckResponse.SERVING
        await self._health.set("", serving)
        await self._health.set(self.definition.full_name, serving)
        self._tasks = [asyncio.create_task(job()) for job in self.definition.background_tasks]
        log.info("serving", service=self.definition.full_name, port=self.port)
        return self.port

    async def stop(self) -> None:
        """Report NOT_SERVING, let in-flight calls finish within the grace period, then clean up."""
        await self._health.enter_graceful_shutdown()
        await asyncio.sleep(DRAIN_S)
        await self._server.stop(self._grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.definition.on_stop is not None:
            await self.definition.on_stop()
        log.info("stopped", service=self.definition.full_name)

    async def serve_until_signalled(self) -> None:
        await self.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        log.info("shutting down", service=self.definition.full_name)
        await self.stop()


def _raise_if_port_in_use(host: str, port: int) -> None:
    """grpc reports any bind failure as one RuntimeError; find out whether the port is taken."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as grpc binds
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise PortInUse(f"port {port} is already in use") from None
