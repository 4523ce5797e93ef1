"""Deadlines end to end: one absolute deadline per request, passed on to every hop.

The gateway starts a deadline for each request (REQUEST_DEADLINE_S); a gRPC server takes the
caller's deadline from the call (grpc-timeout); both keep it in a context variable. From there:
- every outgoing gRPC call gets the time that is left as its timeout (libs/grpc_client.py), so a
  downstream service never works longer than the caller will wait;
- a call whose deadline has already passed is refused before any work (`check`);
- every database transaction carries `statement_timeout` = the time that is left, so PostgreSQL
  stops a statement (a lock wait included) for a caller that gave up; a connection-level
  `statement_timeout` (DB_STATEMENT_TIMEOUT_S) bounds work that has no deadline at all.
"""

from __future__ import annotations

import math
import time
from contextvars import ContextVar, Token
from typing import Any

import psycopg.errors
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.errors import DeadlineExceeded

# Absolute deadline of the request being served, on the time.monotonic() clock; None: no deadline.
_deadline: ContextVar[float | None] = ContextVar("deadline", default=None)

# A transaction whose remaining time is within this of the connection's own statement_timeout
# keeps that one: it saves a round trip (SET LOCAL) on every fresh call, at the cost of letting
# a statement run at most this much past the caller's deadline.
SET_LOCAL_SLACK_S = 0.25


def start(timeout_s: float) -> Token[float | None]:
    """Give the current request `timeout_s` from now. It replaces whatever deadline the context
    holds: the gateway's admission and the incoming call's own deadline are the authority, and
    a value inherited through a copied context (a task started from an earlier request) must
    not cut a new request short."""
    return _deadline.set(time.monotonic() + timeout_s)


def scope(timeout_s: float | None) -> Token[float | None]:
    """Start a deadline `timeout_s` from now, or explicitly none (None or <= 0 never set one).

    Every request sets one or the other rather than leaving the context alone: asyncio can
    carry a context variable from one request task into the next one on the same connection
    (cpython#140947: uvicorn resumes reading from inside the previous request's task), and an
    inherited, long-expired deadline would fail the new request at once."""
    if timeout_s is None or timeout_s <= 0:
        return _deadline.set(None)
    return start(timeout_s)


def reset(token: Token[float | None]) -> None:
    _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left until the current deadline (negative once it passed); None: no deadline."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def expired() -> bool:
    left = remaining()
    return left is not None and left <= 0


def check() -> None:
    """Refuse to start work for a caller whose deadline has passed."""
    if expired():
        raise DeadlineExceeded()


def call_timeout(timeout_s: float | None) -> float | None:
    """The timeout of an outgoing call: its own (or the channel default), cut to what is left."""
    left = remaining()
    if left is None:
        return timeout_s
    if left <= 0:
        raise DeadlineExceeded()
    return left if timeout_s is None else min(timeout_s, left)


# --- PostgreSQL -------------------------------------------------------------------------------


def statement_timeout_ms(seconds: float) -> int:
    """PostgreSQL's statement_timeout value for `seconds` (0 means none, so at least 1 ms)."""
    return max(1, math.ceil(seconds * 1000))


def install_statement_timeouts(engine: AsyncEngine, connection_default_s: float) -> None:
    """Every connection of `engine` starts with `statement_timeout` = `connection_default_s`
    (0: none), and every transaction begun inside a deadline gets SET LOCAL to the time left.
    A statement cancelled by it raises DeadlineExceeded (DEADLINE_EXCEEDED, 504) instead of
    the driver's QueryCanceled, which would read as a database outage (503)."""
    sync_engine = engine.sync_engine
    default_s = max(0.0, connection_default_s)

    if default_s > 0:

        @event.listens_for(sync_engine, "do_connect")
        def _default_timeout(
            _dialect: Any, _record: Any, _args: Any, params: dict[str, Any]
        ) -> None:
            # A startup parameter: no extra round trip per connection.
            option = f"-c statement_timeout={statement_timeout_ms(default_s)}"
            params["options"] = f"{params.get('options', '')} {option}".strip()

    @event.listens_for(sync_engine, "begin")
    def _transaction_timeout(connection: Connection) -> None:
        left = remaining()
        if left is None:
            return
        if left <= 0:
            raise DeadlineExceeded()  # nothing is executed for a caller that left
        if default_s > 0 and left >= default_s - SET_LOCAL_SLACK_S:
            return
        # On the DBAPI cursor, like the pool's pre-ping: housekeeping, not one of the call's
        # statements (the bench's statement counts stay the same). An integer, not a bind
        # parameter: SET takes none. psycopg opens the transaction with it.
        cursor = connection.connection.cursor()
        try:
            cursor.execute(f"SET LOCAL statement_timeout = {statement_timeout_ms(left)}")
        finally:
            cursor.close()

    @event.listens_for(sync_engine, "handle_error")
    def _cancelled_statement(context: Any) -> BaseException | None:
        if isinstance(context.original_exception, psycopg.errors.QueryCanceled):
            return DeadlineExceeded()
        return None
