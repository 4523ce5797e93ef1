"""User administration routes (administrators only): list, read, deactivate and reactivate.

The gateway refuses non-administrators up front (403); identity checks the role again itself,
so a direct gRPC call is held to the same rule. Deactivation revokes every token of the user
(identity publishes the revocation; every verifier refuses them within seconds).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from courseplatform.identity.v1 import identity_pb2
from fastapi import APIRouter, Query, Request
from pydantic import Field

from gateway.auth import Admin
from gateway.bodies import Body, openapi_body
from gateway.fields import PathId
from gateway.pagination import Page, paginated
from gateway.resources import PageOut, Representation, Writable, masked_update, request_body
from gateway.responses import iso
from gateway.routers.ops import backends
from libs.roles import PROTO_TO_ROLE, ROLE_TO_PROTO

router = APIRouter(prefix="/api", tags=["users"])

RoleName = Literal["Student", "Instructor", "Admin"]


def admin_user_json(user: identity_pb2.User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "full_name": user.full_name,
        "role": PROTO_TO_ROLE.get(user.role, ""),
        "is_active": user.is_active,
        "date_joined": iso(user.created_at),
        "last_login": iso(user.last_login) if user.HasField("last_login") else None,
    }


class UserWritable(Writable):
    is_active: bool = Field(description="false deactivates (every token of the user stops working)")


class UserOut(Representation, UserWritable):
    """A user as administrators see it."""

    id: int
    email: str
    full_name: str
    role: str = Field(examples=["Student", "Instructor", "Admin"])
    date_joined: str
    last_login: str | None = Field(description="null when the user never logged in")


UserPatch = request_body(UserOut, UserWritable, partial=True)


@router.get(
    "/users/",
    summary="Users, newest first (administrators)",
    responses={200: {"model": PageOut[UserOut]}},
)
async def list_users(
    request: Request,
    _: Admin,
    params: Page,
    search: Annotated[
        str, Query(max_length=254, description="Part of the email or full name, any case")
    ] = "",
    role: Annotated[RoleName | None, Query(description="Only this role")] = None,
    is_active: Annotated[bool | None, Query(description="Only active (true) or inactive")] = None,
) -> dict[str, Any]:
    query = identity_pb2.ListUsersRequest(
        page=params.page, page_size=params.page_size, search=search
    )
    if role is not None:
        query.role = ROLE_TO_PROTO[role]
    if is_active is not None:
        query.is_active = is_active
    reply = await backends(request).identity.ListUsers(query)
    results = [admin_user_json(user) for user in reply.users]
    return paginated(request, params, results, reply.total_count)


async def _get_user(request: Request, user_id: int) -> dict[str, Any]:
    reply = await backends(request).identity.GetUser(identity_pb2.GetUserRequest(user_id=user_id))
    return admin_user_json(reply.user)


@router.get(
    "/users/{user_id:id}/",
    summary="One user (administrators)",
    responses={200: {"model": UserOut}},
)
async def get_user(request: Request, _: Admin, user_id: PathId) -> dict[str, Any]:
    return await _get_user(request, user_id)


@router.patch(
    "/users/{user_id:id}/",
    summary="Deactivate or reactivate a user (administrators; not yourself)",
    openapi_extra=openapi_body(UserPatch, required=False),
    responses={
        200: {"model": UserOut},
        400: {"description": "Deactivating yourself (errors.is_active), or bad fields"},
    },
)
async def patch_user(
    request: Request,
    _: Admin,
    user_id: PathId,
    body: Annotated[UserWritable, Body(UserPatch)],
) -> dict[str, Any]:
    changes, _mask = await masked_update(body, UserOut, lambda: _get_user(request, user_id))
    if "is_active" not in changes:
        return await _get_user(request, user_id)
    reply = await backends(request).identity.SetUserActive(
        identity_pb2.SetUserActiveRequest(user_id=user_id, is_active=changes["is_active"])
    )
    return admin_user_json(reply.user)
