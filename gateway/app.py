"""The FastAPI application: routers, error handlers, middleware, offline docs, backend channels."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from gateway.backends import Backends
from gateway.course_cache import PublicCourseCache
from gateway.course_events import CourseChangeReader
from gateway.errors import install_error_handlers
from gateway.load_shedding import LoadSheddingMiddleware
from gateway.methods import MethodsMiddleware
from gateway.metrics import install_metrics
from gateway.middleware import GatewayMiddleware
from gateway.openapi import install_contract_openapi
from gateway.responses import OrjsonResponse
from gateway.routers import (
    auth,
    courses,
    enrollments,
    lessons,
    ops,
    passwords,
    progress,
    roster,
    users,
)
from gateway.security import install_security_headers
from libs import metrics, tracing
from libs.revocations import RevocationFeed
from libs.settings import Settings
from libs.sql_counting import SqlCountingMiddleware
from libs.tokens import verifier_from_settings

DESCRIPTION = """
Public REST API of the course platform. Log in with `POST /api/auth/login/`, then press
**Authorize** and paste the `access` token.
"""


def create_app(settings: Settings) -> FastAPI:
    metrics.configure(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.backends = Backends.open(settings)
        # Token revocations: the recent ones before the first request, then followed (each
        # worker process keeps its own copy).
        feed = RevocationFeed.from_settings(settings, app.state.verifier.revocations)
        await feed.load()
        following = asyncio.create_task(feed.run())
        reader = None
        if settings.course_cache_enabled:  # one cache and one stream reader per worker process
            app.state.course_cache = course_cache(settings)
            reader = CourseChangeReader(
                settings.redis_url, app.state.course_cache, block_ms=settings.course_cache_block_ms
            )
            reader.start()
        try:
            yield
        finally:
            if reader is not None:
                await reader.stop()
            following.cancel()
            # Bounded: a stop must never wait on Redis.
            await asyncio.wait({following}, timeout=1.0)
            await app.state.backends.close()

    app = FastAPIOffline(
        title="Course Platform API",
        version="1.0.0",
        description=DESCRIPTION,
        docs_url="/api/docs/",
        redoc_url="/redoc/",
        openapi_url="/api/schema/",
        default_response_class=OrjsonResponse,
        lifespan=lifespan,
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.course_cache = None  # until the lifespan starts it (gateway/course_answers.py)
    app.state.verifier = verifier_from_settings(settings)
    install_error_handlers(app)
    for module in (ops, auth, courses, lessons, enrollments, progress, passwords, roster, users):
        app.include_router(module.router)
    install_contract_openapi(app)
    app.add_middleware(MethodsMiddleware, routes=app.router.routes)  # inside: sees "/"-paths
    app.add_middleware(  # inside metrics and GatewayMiddleware: refusals are counted, logged, with a request id
        LoadSheddingMiddleware,
        max_in_flight=settings.gateway_max_in_flight,
        retry_after_s=settings.overload_retry_after_s,
        deadline_s=settings.request_deadline_s,
    )
    # Metrics: outside the methods check (its 405s count), inside the trailing-slash fix.
    install_metrics(app, serve_route=metrics.port_for(settings, "gateway") is None)
    app.add_middleware(GatewayMiddleware, max_body_bytes=settings.max_body_bytes)
    if settings.sql_statement_counting:  # bench diagnostics: x-sql-statements response header
        app.add_middleware(SqlCountingMiddleware)
    if tracing.enabled():  # a server span per request (before the headers wrap the stack)
        tracing.instrument_fastapi(app)
    install_security_headers(app)
    return app


def course_cache(settings: Settings) -> PublicCourseCache[Any, Any]:
    return PublicCourseCache(
        max_entries=settings.course_cache_max_entries,
        max_pages=settings.course_cache_max_pages,
        max_bytes=settings.course_cache_max_bytes,
        max_age_s=settings.course_cache_max_age_s,
        fresh_s=settings.course_cache_fresh_s,
    )
