"""Per-worker limit on requests in flight, with fast rejection, and each request's deadline.

Pure ASGI, ahead of routing, body parsing and token verification: a refused request costs a
counter check and a short answer (503, Retry-After, the contract's error body), so an overload
cannot queue up in the event loop and slow everyone down, /api/token/verify/ included.
Operational paths are never counted nor refused: probes must answer while the limit is full.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import OVERLOADED_MESSAGE, error_body
from libs import deadlines

# Paths as GatewayMiddleware leaves them (trailing slash added, except file-like names).
EXEMPT_PATHS = frozenset({"/healthz/", "/readyz/", "/metrics", "/metrics/"})


def overloaded_answer(retry_after_s: int) -> tuple[list[tuple[bytes, bytes]], bytes]:
    body = orjson.dumps(error_body(OVERLOADED_MESSAGE))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(retry_after_s).encode()),
    ]
    return headers, body


class LoadSheddingMiddleware:
    def __init__(
        self, app: ASGIApp, max_in_flight: int, retry_after_s: int, deadline_s: float
    ) -> None:
        self.app = app
        self.max_in_flight = max_in_flight  # 0: unlimited
        self.deadline_s = deadline_s  # 0: none
        self.in_flight = 0
        self._headers, self._body = overloaded_answer(retry_after_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in EXEMPT_PATHS:
            # Probes keep their own short timeouts (and no request deadline, inherited or not).
            token = deadlines.scope(None)
            try:
                await self.app(scope, receive, send)
            finally:
                deadlines.reset(token)
            return
        if self.max_in_flight and self.in_flight >= self.max_in_flight:
            start: dict[str, Any] = {
                "type": "http.response.start",
                "status": 503,
                "headers": self._headers,
            }
            await send(start)
            await send({"type": "http.response.body", "body": self._body})
            return
        self.in_flight += 1
        token = deadlines.scope(self.deadline_s)
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            deadlines.reset(token)
