"""ASGI middleware for every request: request id, trailing-slash tolerance, body-size limit,
access log. Pure ASGI (not BaseHTTPMiddleware) so context variables reach the routes."""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import HTTP_MESSAGES, BodyTooLarge, error_body
from libs import call_context
from libs.logging import get_logger

log = get_logger("gateway.access")


def with_trailing_slash(path: str) -> str:
    """Every route answers with and without its trailing slash; routes are declared with one.
    Paths whose last segment looks like a file (jwks.json, swagger-ui.css) are left alone."""
    if path.endswith("/") or "." in path.rsplit("/", 1)[-1]:
        return path
    return path + "/"


# What a client-chosen request id may look like. It travels on as gRPC metadata, which only
# takes visible ASCII: anything else (or anything longer) is replaced by an id of our own.
_REQUEST_ID = re.compile(rb"[\x21-\x7e]{1,128}")


def client_request_id(raw: bytes) -> str | None:
    return raw.decode("ascii") if _REQUEST_ID.fullmatch(raw) else None


class GatewayMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = client_request_id(headers.get(b"x-request-id", b""))
        request_id = request_id or call_context.new_request_id()
        token = call_context.request_id.set(request_id)
        scope = dict(scope)
        scope["path"] = with_trailing_slash(scope["path"])
        started = time.perf_counter()
        status = 500

        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._reply(send, 413, request_id)
            call_context.request_id.reset(token)
            return

        received = 0
        limit = self.max_body_bytes

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message = dict(message)
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        except BodyTooLarge:
            if not response_started:
                status = 413
                await self._reply(send, 413, request_id)
        finally:
            log.info(
                "http",
                method=scope.get("method"),
                path=scope["path"],
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )
            call_context.request_id.reset(token)

    @staticmethod
    async def _reply(send: Send, status: int, request_id: str) -> None:
        body = orjson.dumps(error_body(HTTP_MESSAGES[status]))
        headers: list[tuple[bytes, bytes]] = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id.encode("latin-1")),
        ]
        start: dict[str, Any] = {
            "type": "http.response.start",
            "status": status,
            "headers": headers,
        }
        await send(start)
        await send({"type": "http.response.body", "body": body})
