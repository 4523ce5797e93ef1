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
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import Token
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from libs import (
    call_context,
    grpc_client,
    grpc_malformed,
    health_watch,
    metrics,
    outages,
    sql_counting,
    tracing,
)
from libs.concurrency_limit import ConcurrencyLimitInterceptor
from libs.errors import DomainError, Unauthenticated, Unavailable
from libs.grpc_errors import abort_with, grpc_code_for
from libs.logging import get_logger
from libs.tokens import TokenVerifier

log = get_logger("grpc")

# A unary method as grpc.aio calls it.
Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


# Connections are closed (GOAWAY, then the grace for calls on them) after this age, so clients
# resolve their `dns:///` targets again and start using replicas added since (a scale-up);
# otherwise a long-lived channel keeps only the pods it first found. Calls are not failed by it.
MAX_CONNECTION_AGE_MS = 300_000
MAX_CONNECTION_AGE_GRACE_MS = 30_000


def server_options(max_connection_age_ms: int = MAX_CONNECTION_AGE_MS) -> list[tuple[str, int]]:
    return [
        ("grpc.max_connection_age_ms", max_connection_age_ms),
        ("grpc.max_connection_age_grace_ms", MAX_CONNECTION_AGE_GRACE_MS),
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
# How long stop() waits for cancelled background tasks.
TASK_STOP_S = 2.0
DRAIN_S = 0.5

# Health service name that answers "is this process alive" (Kubernetes liveness and startup
# probes): SERVING from start until SIGTERM, whatever the database does. The overall status ("")
# and the service's own name follow the database (health_watch) and decide readiness; a liveness
# probe on those would restart every pod during a database outage.
LIVENESS_SERVICE = "liveness"


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
    background_tasks: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    # Called after the server stopped serving (close pools, flush).
    on_stop: Callable[[], Awaitable[None]] | None = None
    # What the server's gRPC health follows (its database); None: SERVING while it runs.
    health_probe: health_watch.HealthProbe | None = None
    # Awaited before the port serves (e.g. loading the recent token revocations).
    startup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


class CallContextInterceptor(grpc.aio.ServerInterceptor):
    """Wraps each unary call of the service: malformed-request check, request id, token check,
    error translation (outages become UNAVAILABLE), log. Other methods of the server (health,
    reflection) get the malformed-request check only."""

    def __init__(self, definition: ServiceDefinition, verifier: TokenVerifier) -> None:
        self._prefix = f"/{definition.full_name}/"
        self._public = definition.public_methods
        self._verifier = verifier

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method_path = handler_call_details.method
        if handler is None:
            return handler
        if not method_path.startswith(self._prefix):
            return grpc_malformed.guard(handler)
        if not handler.unary_unary:
            # Only unary calls get the token check below; a streaming method of the service
            # would run unchecked, so it is refused (UNIMPLEMENTED) until this learns streams.
            return None
        method = method_path.removeprefix(self._prefix)
        # grpc-stubs type handlers for the sync server; on grpc.aio they are coroutine functions.
        behavior = self._wrap(method, cast(Behavior, handler.unary_unary))
        return grpc.unary_unary_rpc_method_handler(
            behavior,
            request_deserializer=grpc_malformed.tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )

    def _wrap(self, method: str, behavior: Behavior) -> Behavior:
        needs_token = method not in self._public
        verifier = self._verifier

        async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            # Only text values: binary (-bin) metadata carries nothing read here.
            metadata = {
                key: value
                for key, value in context.invocation_metadata() or ()
                if isinstance(value, str)
            }
            request_id = metadata.get(call_context.REQUEST_ID_HEADER) or (
                call_context.new_request_id()
            )
            tokens: list[Token[Any]] = [call_context.request_id.set(str(request_id))]
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            user_id: int | None = None
            try:
                if request is grpc_malformed.MALFORMED:  # decided before the token and handler
                    code = grpc.StatusCode.INVALID_ARGUMENT
                    await grpc_malformed.refuse(context)
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
                return await behavior(request, context)
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
                if outages.is_outage(error):
                    # The database or Redis is unreachable: the caller may retry (503), and one
                    # short line is enough; the health watch reports the outage too.
                    code = grpc.StatusCode.UNAVAILABLE
                    log.warning(
                        "dependency unavailable", method=method, error=outages.describe(error)
                    )
                    await abort_with(context, Unavailable())
                code = grpc.StatusCode.INTERNAL
                log.exception("unhandled error", method=method, error=repr(error))
                await context.abort(grpc.StatusCode.INTERNAL, "Internal error")
            finally:
                log.info(
                    "rpc",
                    method=method,
                    grpc_status=code.name,
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
        count_sql_statements: bool = False,
        max_concurrent_calls: int = 0,
    ) -> None:
        self.definition = definition
        self._host, self._port = host, port
        self._address = f"{host}:{port}"
        self._grace = shutdown_grace_s
        # The limit is outside the rest: a refusal costs no token check (docs/overload.md).
        self.limiter = ConcurrencyLimitInterceptor(definition.full_name, max_concurrent_calls)
        self._interceptors: list[grpc.aio.ServerInterceptor] = [
            self.limiter,
            CallContextInterceptor(definition, verifier),
        ]
        if metrics.enabled():  # RPC counts and latency (libs/metrics.py)
            self._interceptors.insert(0, metrics.ServerMetricsInterceptor())
        if tracing.enabled():  # outermost but counting: the access log line is in the span
            self._interceptors.insert(0, tracing.server_interceptor())
        if count_sql_statements:  # bench diagnostics (SQL_STATEMENT_COUNTING); outermost
            self._interceptors.insert(
                0, sql_counting.StatementCountingInterceptor(definition.full_name)
            )
        self._tasks: list[asyncio.Task[None]] = []
        self.port = 0

    def add_interceptor(self, interceptor: grpc.aio.ServerInterceptor) -> None:
        """Wrap every call in `interceptor` too, outermost (before start(); tests count with it)."""
        self._interceptors.insert(0, interceptor)

    async def start(self) -> int:
        # grpc.aio objects bind to the running loop, so they are made here, not in __init__.
        self._server = grpc.aio.server(interceptors=self._interceptors, options=server_options())
        self._health = health_watch.HealthServicer()
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
        for prepare in self.definition.startup:
            await prepare()
        await self._server.start()
        serving = health_pb2.HealthCheckResponse.SERVING
        await self._health.set("", serving)
        await self._health.set(self.definition.full_name, serving)
        await self._health.set(LIVENESS_SERVICE, serving)
        self._tasks = [asyncio.create_task(job()) for job in self.definition.background_tasks]
        if (probe := self.definition.health_probe) is not None:
            watching = health_watch.watch(probe, self._health, [self.definition.full_name])
            self._tasks.append(asyncio.create_task(watching))
        log.info("serving", service=self.definition.full_name, port=self.port)
        return self.port

    async def stop(self) -> None:
        """Report NOT_SERVING, let in-flight calls finish within the grace period, then clean up."""
        await self._health.enter_graceful_shutdown()
        await asyncio.sleep(DRAIN_S)
        await self._server.stop(self._grace)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: a task whose client library swallowed the cancellation (redis-py can,
            # mid-connect) must not hold the stop forever.
            done, pending = await asyncio.wait(self._tasks, timeout=TASK_STOP_S)
            for task in done:
                if not task.cancelled():
                    task.exception()  # retrieved: it ended while stopping, nothing to report
            for task in pending:
                log.warning("background task did not stop in time", task=task.get_name())
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
