"""Opt-in count of the SQL statements one call causes, across every service it reaches.

Enabled by the `SQL_STATEMENT_COUNTING` setting (the benchmark turns it on; it is off by default,
and then nothing here runs: no listener is attached and no counter is ever started).

- `libs.db.create_engine` attaches `count_statement` to the engine when the setting is on and
  calls `enable()`, so the gRPC server interceptor knows to count its calls.
- The server interceptor `start()`s a counter per call, SQLAlchemy increments it for each
  statement sent to PostgreSQL (BEGIN/COMMIT are not statements here), and the total goes back
  to the caller as the `x-sql-statements` trailer.
- The gRPC client interceptor adds each downstream call's trailer to the caller's counter, so a
  service's total includes the services it called on the request's behalf.
- The gateway's `SqlCountingMiddleware` does the same per HTTP request and answers the total in
  the `x-sql-statements` response header.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:  # services import this module too; they need no web framework at run time
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-sql-statements"


class Counter:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


_current: ContextVar[Counter | None] = ContextVar("sql_statement_counter", default=None)
_enabled = False


def enable(value: bool = True) -> None:
    global _enabled
    _enabled = value


def enabled() -> bool:
    return _enabled


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
