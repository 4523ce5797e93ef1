"""Which failures mean "a dependency is unreachable" rather than "our code is wrong".

The server interceptor answers these UNAVAILABLE (503 at the gateway) with one short log line;
anything else stays INTERNAL with its traceback. Imports are the drivers the services use.
"""

from __future__ import annotations

import errno
import socket

import psycopg
import redis.exceptions
import sqlalchemy.exc

# Raised when the database, its pool or Redis cannot be reached or dropped the connection.
_OUTAGE_TYPES: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,  # connect refused, server closed the connection, ...
    sqlalchemy.exc.InterfaceError,  # the connection was already closed
    sqlalchemy.exc.TimeoutError,  # no pooled connection became free in time
    psycopg.OperationalError,
    psycopg.InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,  # refused, reset, aborted (OSError subclasses)
    TimeoutError,
    socket.gaierror,  # the host name does not resolve (a DNS outage)
)
# Socket errors that are about the network path, not about this process.
_NETWORK_ERRNOS = frozenset(
    {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN}
)


def is_outage(error: BaseException) -> bool:
    """True when `error`, or an error it was raised from, says a dependency is unreachable."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _OUTAGE_TYPES):
            return True
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, OSError) and current.errno in _NETWORK_ERRNOS:
            return True
        current = current.__cause__ or current.__context__
    return False


def describe(error: BaseException) -> str:
    """A one-line description of an outage for the log: the type and the first line, short."""
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first_line[:200]}"
