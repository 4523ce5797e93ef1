"""Auth routes of the contract: register, login, token refresh and verify, logout, me."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from courseplatform.identity.v1 import identity_pb2
from fastapi import APIRouter, Request, Response

from gateway.auth import CurrentUser
from gateway.bodies import Body, RequestModel, openapi_body
from gateway.client import client_address_metadata
from gateway.responses import OrjsonResponse, iso
from gateway.routers.ops import backends
from gateway.security import NO_STORE
from libs.errors import Unauthenticated
from libs.roles import PROTO_TO_ROLE, ROLE_TO_PROTO

router = APIRouter(prefix="/api", tags=["auth"])


class RegisterBody(RequestModel):
    email: str
    full_name: str
    role: Literal["Student", "Instructor"]
    password: str
    password_confirm: str


class LoginBody(RequestModel):
    email: str
    password: str


class RefreshBody(RequestModel):
    refresh: str


class VerifyBody(RequestModel):
    token: str


def user_json(user: identity_pb2.User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "full_name": user.full_name,
        "role": PROTO_TO_ROLE.get(user.role, ""),
    }


async def _register(request: Request, body: RegisterBody) -> dict[str, Any]:
    reply = await backends(request).identity.Register(
        identity_pb2.RegisterRequest(
            email=body.email,
            full_name=body.full_name,
            role=ROLE_TO_PROTO[body.role],
            password=body.password,
            password_confirm=body.password_confirm,
        )
    )
    return user_json(reply.user)


@router.post(
    "/register/",
    status_code=201,
    summary="Create an account",
    openapi_extra=openapi_body(RegisterBody),
)
async def register(
    request: Request, body: Annotated[RegisterBody, Body(RegisterBody)]
) -> dict[str, Any]:
    return await _register(request, body)


@router.post(
    "/user/register/",
    status_code=201,
    summary="Create an account (alias of /api/register/)",
    openapi_extra=openapi_body(RegisterBody),
)
async def register_alias(
    request: Request, body: Annotated[RegisterBody, Body(RegisterBody)]
) -> dict[str, Any]:
    return await _register(request, body)


@router.post(
    "/auth/login/",
    summary="Log in",
    openapi_extra=openapi_body(LoginBody),
    responses={
        401: {"description": "Wrong password or unknown user (one message for both)"},
        429: {"description": "Too many failed logins for this account or address; see Retry-After"},
    },
)
async def login(request: Request, body: Annotated[LoginBody, Body(LoginBody)]) -> Response:
    reply = await backends(request).identity.Login(
        identity_pb2.LoginRequest(email=body.email, password=body.password),
        metadata=client_address_metadata(request),
    )
    user = user_json(reply.user)
    tokens = {
        "access": reply.access_token,
        "refresh": reply.refresh_token,
        "authorities": [user["role"]],
        **user,
    }
    return OrjsonResponse(tokens, headers=NO_STORE)  # no cache may keep tokens


@router.post(
    "/token/refresh/",
    summary="Exchange a refresh token for a new access token (the refresh token rotates)",
    openapi_extra=openapi_body(RefreshBody),
    responses={401: {"description": "Invalid, expired or revoked refresh token"}},
)
async def refresh(request: Request, body: Annotated[RefreshBody, Body(RefreshBody)]) -> Response:
    reply = await backends(request).identity.RefreshToken(
        identity_pb2.RefreshTokenRequest(refresh_token=body.refresh)
    )
    tokens = {"access": reply.access_token, "refresh": reply.refresh_token}
    return OrjsonResponse(tokens, headers=NO_STORE)


@router.post(
    "/token/verify/",
    summary="Check a token's signature, expiry and type",
    openapi_extra=openapi_body(VerifyBody),
    responses={401: {"description": "Invalid, expired or revoked token, or a spent refresh token"}},
)
async def verify(request: Request, body: Annotated[VerifyBody, Body(VerifyBody)]) -> dict[str, Any]:
    # An access token is verified here with the published keys and the revocations this
    # process follows: no backend round trip. A refresh token is also asked of identity, the
    # only one that knows whether it was spent (rotated) or revoked.
    verifier = request.app.state.verifier
    try:
        verifier.verify(body.token, "access")
    except Unauthenticated:
        verifier.verify(body.token, "refresh")
        await backends(request).identity.VerifyRefreshToken(
            identity_pb2.VerifyRefreshTokenRequest(refresh_token=body.token)
        )
    return {}


@router.post(
    "/auth/logout/",
    status_code=204,
    summary="Revoke a refresh token (and every token rotated from the same login)",
    openapi_extra=openapi_body(RefreshBody),
)
async def logout(
    request: Request, _: CurrentUser, body: Annotated[RefreshBody, Body(RefreshBody)]
) -> Response:
    await backends(request).identity.RevokeToken(
        identity_pb2.RevokeTokenRequest(refresh_token=body.refresh)
    )
    return Response(status_code=204)


@router.get("/users/me/", summary="The calling user")
async def me(request: Request, _: CurrentUser) -> dict[str, Any]:
    reply = await backends(request).identity.GetUser(identity_pb2.GetUserRequest())
    user = reply.user
    return {
        **user_json(user),
        "is_active": user.is_active,
        "created_at": iso(user.created_at),
        "updated_at": iso(user.updated_at),
    }
