"""The gateway's Prometheus metrics: requests by route template, method and status class, their
latency and the requests in flight (libs/metrics.py defines them), and the `/metrics` route.

The route label is the template the request matched (`/api/courses/{course_id}/`), never the raw
path; a path no route knows is `unmatched`, an unknown method `other`: the label set stays bounded
whatever clients send.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from collections.abc import Sequence

from fastapi import FastAPI, Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs import metrics
from libs.logging import get_logger
from libs.settings import Settings

log = get_logger("gateway")

METRICS_PATH = "/metrics/"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"


def route_template(scope: Scope, routes: Sequence[BaseRoute]) -> str:
    """The template of the route that served the request (routing records it in the scope;
    requests answered before routing, 405 and HEAD, are matched here)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    for candidate in routes:
        match, _ = candidate.matches(scope)
        if match is not Match.NONE:
            candidate_path = getattr(candidate, "path", None)
            if isinstance(candidate_path, str):
                return candidate_path
    return UNMATCHED


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics.HTTP_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_status)
        finally:
            metrics.HTTP_IN_FLIGHT.dec()
            route = route_template(scope, self.routes)
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
            metrics.HTTP_DURATION.labels(route, method).observe(time.perf_counter() - started)
            metrics.HTTP_REQUESTS.labels(route, method, metrics.status_class(status)).inc()


def prepare_process(settings: Settings, workers: int) -> None:
    """`python -m gateway` before uvicorn starts: with several workers, prometheus-client's
    multiprocess mode (each worker writes its values to files in PROMETHEUS_MULTIPROC_DIR, a scrape
    of any worker sums them up; the workers inherit the variable); and /metrics on its own port
    when one is set (served by this supervising process, which reads the workers' files)."""
    if not settings.metrics_enabled:
        return
    if workers > 1 and not os.environ.get(metrics.MULTIPROC_ENV):
        directory = tempfile.mkdtemp(prefix="courseplatform-gateway-metrics-")
        os.environ[metrics.MULTIPROC_ENV] = directory
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
    port = metrics.port_for(settings, "gateway")
    if port is not None:
        bound = metrics.serve_http(port, settings.gateway_host)
        log.info("metrics", url=f"http://{settings.gateway_host}:{bound}/metrics")


async def metrics_endpoint() -> Response:
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


def install_metrics(app: FastAPI, *, serve_route: bool) -> None:
    """Count every request; serve `/metrics` here unless it has a port of its own (no auth, not
    in the OpenAPI: it is for Prometheus, not for API clients)."""
    if not metrics.enabled():
        return
    if serve_route:
        app.add_api_route(METRICS_PATH, metrics_endpoint, methods=["GET"], include_in_schema=False)
    app.add_middleware(MetricsMiddleware, routes=app.router.routes)
