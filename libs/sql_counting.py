"""Opt-in count of the SQL statements one call causes, across every service it reaches.

Enabled by the `SQL_STATEMENT_COUNTING` setting (the benchmark turns it on; it is off by default,
and then nothing here runs: no listener, no interceptor, no counter is ever started).

- `libs.db.create_engine` attaches `count_statement` to the engine when the setting is on.
- `StatementCountingInterceptor`, which `GrpcServer` adds only when the setting is on, `start()`s
  a counter per call of the service; SQLAlchemy increments it for each statement sent to
  PostgreSQL (BEGIN/COMMIT are not statements here), and the total goes back to the caller as
  the `x-sql-statements` trailer.
- `DownstreamCountingInterceptor`, which `open_channel` adds only when the setting is on, adds
  each downstream call's trailer to the caller's counter, so a service's total includes the
  services it called on the request's behalf.
- The gateway's `SqlCountingMiddleware` does the same per HTTP request and answers the total in
  the `x-sql-statements` response header.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, cast

import grpc

if TYPE_CHECKING:  # services import this module too; they need no web framework at run time
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    # grpc.aio's shapes as the two interceptors below receive them (generic only in the stubs).
    Handler = grpc.RpcMethodHandler[Any, Any]
    NextHandler = Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]
    Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
    NextCall = Callable[[grpc.aio.ClientCallDetails, Any], Any]

HEADER = "x-sql-statements"


class Counter:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


_current: ContextVar[Counter | None] = ContextVar("sql_statement_counter", default=None)


def start() -> tuple[Counter, Token[Counter | None]]:
    counter = Counter()
    return counter, _current.set(counter)


def stop(token: Token[Counter | None]) -> None:
    _current.reset(token)


def active() -> bool:
    return _current.get() is not None


def add(count: int) -> None:
    counter = _current.get()
    if counter is not None:
        counter.value += count


def count_statement(*_: Any) -> None:
    """SQLAlchemy `before_cursor_execute` listener (runs in the caller's context)."""
    add(1)


def from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> int:
    for key, value in metadata or ():
        if key == HEADER:
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


async def collect_downstream(call: Any) -> None:
    """Wait for a unary call made inside a counted call and add its trailer to our counter.
    The call's outcome is left for its caller, who awaits the same (finished) call object."""
    with contextlib.suppress(grpc.RpcError):
        await call
    add(from_metadata(await call.trailing_metadata()))


class StatementCountingInterceptor(grpc.aio.ServerInterceptor):
    """Server side: counts the statements of each call of one service (not health or
    reflection) and answers the total as a trailer when the call succeeds."""

    def __init__(self, service_full_name: str) -> None:
        self._prefix = f"/{service_full_name}/"

    async def intercept_service(
        self, continuation: NextHandler, details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(details)
        ours = details.method.startswith(self._prefix)
        if handler is None or handler.unary_unary is None or not ours:
            return handler
        behavior = cast("Behavior", handler.unary_unary)  # a coroutine function on grpc.aio

        async def counted(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            counter, token = start()
            try:
                response = await behavior(request, context)
                context.set_trailing_metadata(((HEADER, str(counter.value)),))
                return response
            finally:
                stop(token)

        return grpc.unary_unary_rpc_method_handler(
            counted,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class DownstreamCountingInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Client side: inside a counted call, adds each outgoing call's trailer to its counter."""

    async def intercept_unary_unary(
        self, continuation: NextCall, details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        call = await continuation(details, request)
        if active():
            await collect_downstream(call)
        return call


class SqlCountingMiddleware:
    """Gateway side: total statements of the backend calls one HTTP request made."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        counter, token = start()

        async def send_with_count(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [
                    *message.get("headers", []),
                    (HEADER.encode(), str(counter.value).encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_count)
        finally:
            stop(token)
