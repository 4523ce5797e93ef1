"""Who is calling: the bearer token verified here, then forwarded to every backend call.

Routes depend on `CurrentUser`, `Student`, `Instructor` or `Admin`; the dependency verifies the token
(so a bad one is a 401 before any backend is asked) and puts it in the call context, where the
gRPC client interceptor picks it up.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from libs import call_context
from libs.claims import Claims
from libs.errors import PermissionDenied, Unauthenticated
from libs.tokens import TokenVerifier

bearer_scheme = HTTPBearer(auto_error=False, description="The `access` token from login")

STUDENTS_ONLY = "Only students can perform this action."
INSTRUCTORS_ONLY = "Only instructors can perform this action."
ADMINS_ONLY = "Only administrators can perform this action."


def verifier(request: Request) -> TokenVerifier:
    return request.app.state.verifier


async def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Claims:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("Authentication credentials were not provided.")
    claims = verifier(request).verify(credentials.credentials, "access")
    call_context.access_token.set(credentials.credentials)
    call_context.claims.set(claims)
    return claims


async def student(claims: Annotated[Claims, Depends(authenticated)]) -> Claims:
    if not claims.is_student:
        raise PermissionDenied(STUDENTS_ONLY)
    return claims


async def instructor(claims: Annotated[Claims, Depends(authenticated)]) -> Claims:
    if not claims.is_instructor:
        raise PermissionDenied(INSTRUCTORS_ONLY)
    return claims


async def admin(claims: Annotated[Claims, Depends(authenticated)]) -> Claims:
    if not claims.is_admin:
        raise PermissionDenied(ADMINS_ONLY)
    return claims


CurrentUser = Annotated[Claims, Depends(authenticated)]
Student = Annotated[Claims, Depends(student)]
Instructor = Annotated[Claims, Depends(instructor)]
Admin = Annotated[Claims, Depends(admin)]
