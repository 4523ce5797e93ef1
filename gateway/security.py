"""Security headers on every gateway answer, errors and docs included (the `secure` library
builds and checks them; its pure-ASGI middleware applies them).

One Content-Security-Policy for every path, written for the only HTML the gateway serves,
Swagger UI (/api/docs/) and ReDoc (/redoc/), whose assets come from the gateway itself:
scripts from here plus the hash of Swagger UI's inline start-up script (no 'unsafe-inline'
for scripts), inline styles (ReDoc's styled-components write <style> elements at run time),
`data:` images (the bundles' icons), workers from `blob:` (ReDoc's search index), nothing
framed and framing nothing. Token answers add `Cache-Control: no-store` (NO_STORE).
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import cast

import secure
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from secure.middleware import SecureASGIMiddleware
from starlette.types import ASGIApp

NO_STORE = {"Cache-Control": "no-store"}

_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL)


def inline_script_hashes(html: bytes) -> list[str]:
    """CSP sources ('sha256-...') allowing exactly the inline scripts of `html`."""
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html)
    ]


def swagger_ui_script_hashes(app: FastAPI) -> list[str]:
    """The hashes of the inline script fastapi-offline's Swagger UI page carries: rendered with
    the arguments that page uses (asset URLs and title do not enter the script)."""
    if app.openapi_url is None:
        return []
    page = get_swagger_ui_html(
        openapi_url=app.openapi_url,
        title="",
        oauth2_redirect_url=app.swagger_ui_oauth2_redirect_url,
        swagger_ui_parameters=app.swagger_ui_parameters,
    )
    return inline_script_hashes(bytes(page.body))


def security_policy(*script_sources: str) -> secure.Secure:
    csp = (
        secure.ContentSecurityPolicy()
        .default_src("'self'")
        .script_src("'self'", *script_sources)
        .style_src("'self'", "'unsafe-inline'")
        .img_src("'self'", "data:")
        .worker_src("'self'", "blob:")
        .object_src("'none'")
        .base_uri("'none'")
        .form_action("'self'")
        .frame_ancestors("'none'")
    )
    return secure.Secure(
        csp=csp,
        xcto=secure.XContentTypeOptions().nosniff(),
        xfo=secure.XFrameOptions().deny(),
        referrer=secure.ReferrerPolicy().no_referrer(),
    ).validate_and_normalize_headers(on_invalid="raise")


def install_security_headers(app: FastAPI) -> None:
    """Wrap the app's whole middleware stack, so answers made outside user middleware (the
    500 of Starlette's ServerErrorMiddleware) carry the headers too."""
    policy = security_policy(*swagger_ui_script_hashes(app))
    build = app.build_middleware_stack

    def build_with_headers() -> ASGIApp:
        # secure types the ASGI scope as `object`; it is a plain ASGI app all the same.
        return cast(ASGIApp, SecureASGIMiddleware(build(), secure=policy))

    app.build_middleware_stack = build_with_headers  # type: ignore[method-assign]
