"""The FastAPI application: routers, error handlers, middleware, offline docs, backend channels."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from gateway.backends import Backends
from gateway.errors import install_error_handlers
from gateway.methods import MethodsMiddleware
from gateway.middleware import GatewayMiddleware
from gateway.openapi import install_contract_openapi
from gateway.responses import OrjsonResponse
from gateway.routers import auth, courses, enrollments, lessons, ops, passwords, progress, users
from gateway.security import install_security_headers
from libs.revocations import RevocationFeed
from libs.settings import Settings
from libs.sql_counting import SqlCountingMiddleware
from libs.tokens import verifier_from_settings

DESCRIPTION = """
Public REST API of the course platform. Log in with `POST /api/auth/login/`, then press
**Authorize** and paste the `access` token.
"""


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.backends = Backends.open(settings)
        # Token revocations: the recent ones before the first request, then followed (each
        # worker process keeps its own copy).
        feed = RevocationFeed.from_settings(settings, app.state.verifier.revocations)
        await feed.load()
        following = asyncio.create_task(feed.run())
        try:
            yield
        finally:
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
    app.state.verifier = verifier_from_settings(settings)
    install_error_handlers(app)
    for module in (ops, auth, courses, lessons, enrollments, progress, passwords, users):
        app.include_router(module.router)
    install_contract_openapi(app)
    app.add_middleware(MethodsMiddleware, routes=app.router.routes)  # inside: sees "/"-paths
    app.add_middleware(GatewayMiddleware, max_body_bytes=settings.max_body_bytes)
    if settings.sql_statement_counting:  # bench diagnostics: x-sql-statements response header
        app.add_middleware(SqlCountingMiddleware)
    install_security_headers(app)
    return app
