"""Per-call context that follows a request across services: its id and the caller's token.

Set by the gateway for each HTTP request and by the gRPC server for each call; read by the
client interceptor that forwards both on outgoing calls, and by the log processor.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar

from libs.claims import Claims
from libs.errors import Unauthenticated

REQUEST_ID_HEADER = "x-request-id"
AUTHORIZATION_HEADER = "authorization"

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
access_token: ContextVar[str | None] = ContextVar("access_token", default=None)
claims: ContextVar[Claims | None] = ContextVar("claims", default=None)


def current_claims() -> Claims:
    """The verified caller of the call being served; the auth interceptor guarantees one."""
    value = claims.get()
    if value is None:
        raise Unauthenticated()
    return value


def new_request_id() -> str:
    return uuid.uuid4().hex


def bearer_token(header_value: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value, or None when absent or malformed."""
    if not header_value:
        return None
    scheme, _, token = header_value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
