"""Password routes: change (signed in), reset by mail (request a code, redeem it)."""

from __future__ import annotations

from typing import Annotated

from courseplatform.identity.v1 import identity_pb2
from fastapi import APIRouter, Request, Response

from gateway.auth import CurrentUser
from gateway.bodies import Body, RequestModel, openapi_body
from gateway.responses import OrjsonResponse
from gateway.routers.ops import backends

router = APIRouter(prefix="/api/auth/password", tags=["auth"])


class ChangePasswordBody(RequestModel):
    current_password: str
    new_password: str
    new_password_confirm: str


class ResetRequestBody(RequestModel):
    email: str


class ResetConfirmBody(RequestModel):
    code: str
    new_password: str
    new_password_confirm: str


@router.post(
    "/change/",
    status_code=204,
    summary="Change your password (every session of yours ends: log in again)",
    openapi_extra=openapi_body(ChangePasswordBody),
    responses={
        400: {
            "description": "Wrong current password (`current_password`), new password refused "
            "by the policy (`password`), or the two new passwords differ (`non_field_errors`)"
        }
    },
)
async def change_password(
    request: Request, _: CurrentUser, body: Annotated[ChangePasswordBody, Body(ChangePasswordBody)]
) -> Response:
    await backends(request).identity.ChangePassword(
        identity_pb2.ChangePasswordRequest(
            current_password=body.current_password,
            new_password=body.new_password,
            new_password_confirm=body.new_password_confirm,
        )
    )
    return Response(status_code=204)


@router.post(
    "/reset/",
    status_code=202,
    summary="Mail a password reset code (same answer for any valid email, registered or not)",
    openapi_extra=openapi_body(ResetRequestBody),
    responses={400: {"description": "Not a valid email address (`email`)"}},
)
async def request_reset(
    request: Request, body: Annotated[ResetRequestBody, Body(ResetRequestBody)]
) -> Response:
    await backends(request).identity.RequestPasswordReset(
        identity_pb2.RequestPasswordResetRequest(email=body.email)
    )
    return OrjsonResponse({}, status_code=202)


@router.post(
    "/reset/confirm/",
    status_code=204,
    summary="Set a new password with a mailed reset code (every session ends)",
    openapi_extra=openapi_body(ResetConfirmBody),
    responses={
        400: {
            "description": "Unknown, used or expired code (`code`), new password refused by "
            "the policy (`password`), or the two new passwords differ (`non_field_errors`)"
        }
    },
)
async def confirm_reset(
    request: Request, body: Annotated[ResetConfirmBody, Body(ResetConfirmBody)]
) -> Response:
    await backends(request).identity.ConfirmPasswordReset(
        identity_pb2.ConfirmPasswordResetRequest(
            code=body.code,
            new_password=body.new_password,
            new_password_confirm=body.new_password_confirm,
        )
    )
    return Response(status_code=204)
