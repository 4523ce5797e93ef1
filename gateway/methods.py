"""HTTP methods per path, answered the same way everywhere (pure ASGI, below the request-id
middleware so it sees the trailing-slash-normalised path):

- HEAD is served wherever GET is: the request runs as GET, the answer keeps its headers
  (Content-Length included) and loses its body.
- OPTIONS on a path the gateway serves is 204 with `Allow`; on any other path, 404.
- A 405 carries the full `Allow` of its path. The router answers a wrong method from the
  first route whose path matches, and FastAPI has one route per method, so its `Allow` named
  one method only.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The order `Allow` lists them in.
METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_PROBED = ("GET", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> list[str]:
    """Every method some route serves on the scope's path (HEAD with GET, OPTIONS with any);
    empty when no route serves the path."""
    methods: set[str] = set()
    for route in routes:
        if isinstance(route, Mount):
            # The only mount is the docs' static files: GET and HEAD.
            if route.matches(scope)[0] is not Match.NONE:
                methods.add("GET")
            continue
        # Asked method by method: routes may be nested (FastAPI keeps included routers as
        # one node), and a full match is what the router itself would dispatch.
        for method in _PROBED:
            if (
                method not in methods
                and route.matches({**scope, "method": method})[0] is Match.FULL
            ):
                methods.add(method)
    if not methods:
        return []
    if "GET" in methods:
        methods.add("HEAD")
    methods.add("OPTIONS")
    return sorted(methods, key=lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else 99)


class MethodsMiddleware:
    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes  # the app's own list: routes added later are seen too

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method == "OPTIONS":
            allowed = allowed_methods(self.routes, scope)
            if allowed:
                await _no_content(send, allowed)
                return
        elif method == "HEAD":
            scope = {**scope, "method": "GET"}
        # Routing adds to the scope it is given (mounts change root_path): match on a copy.
        request_scope = dict(scope)
        await self.app(scope, receive, self._sender(request_scope, send, head=method == "HEAD"))

    def _sender(self, scope: Scope, send: Send, *, head: bool) -> Send:
        async def sender(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                allow = ", ".join(allowed_methods(self.routes, scope)).encode("latin-1")
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                message = {**message, "headers": [*headers, (b"allow", allow)]}
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        return sender


async def _no_content(send: Send, allowed: list[str]) -> None:
    allow = ", ".join(allowed).encode("latin-1")
    await send({"type": "http.response.start", "status": 204, "headers": [(b"allow", allow)]})
    await send({"type": "http.response.body", "body": b""})
