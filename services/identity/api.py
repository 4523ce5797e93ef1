"""IdentityService servicer: protos in, use cases called, protos out. No rules here."""

from __future__ import annotations

import grpc
from courseplatform.identity.v1 import identity_pb2, identity_pb2_grpc

from libs import client_address
from libs.call_context import current_claims
from libs.claims import Role
from libs.proto_time import to_timestamp
from libs.roles import PROTO_TO_ROLE, ROLE_TO_PROTO
from libs.tokens import JwksFile, TokenVerifier
from services.identity.admin import UserAdministration
from services.identity.domain import User
from services.identity.password_reset import PasswordResets
from services.identity.usecases import Accounts

PUBLIC_METHODS = frozenset(
    {
        "Register",
        "Login",
        "RefreshToken",
        "GetJwks",
        "RequestPasswordReset",
        "ConfirmPasswordReset",
        "VerifyRefreshToken",
    }
)


def user_to_proto(user: User) -> identity_pb2.User:
    return identity_pb2.User(
        id=user.id,
        email=user.email,
        full_name=user.full_name,
        role=ROLE_TO_PROTO[user.role],
        is_active=user.is_active,
        created_at=to_timestamp(user.created_at),
        updated_at=to_timestamp(user.updated_at),
        last_login=to_timestamp(user.last_login),
    )


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(
        self,
        accounts: Accounts,
        verifier: TokenVerifier,
        jwks: JwksFile,
        resets: PasswordResets,
        trusted_gateways: tuple[client_address.Network, ...],
        administration: UserAdministration,
    ) -> None:
        self._accounts = accounts
        self._administration = administration
        self._verifier = verifier
        self._jwks = jwks
        self._resets = resets
        self._trusted_gateways = trusted_gateways

    async def Register(
        self, request: identity_pb2.RegisterRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.RegisterResponse:
        user = await self._accounts.register(
            email=request.email,
            full_name=request.full_name,
            role=PROTO_TO_ROLE.get(request.role, ""),
            password=request.password,
            password_confirm=request.password_confirm,
        )
        return identity_pb2.RegisterResponse(user=user_to_proto(user))

    async def Login(
        self, request: identity_pb2.LoginRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.LoginResponse:
        claimed = dict(context.invocation_metadata() or ()).get(
            client_address.CLIENT_ADDRESS_HEADER
        )
        address = client_address.from_metadata(
            context.peer(), claimed if isinstance(claimed, str) else None, self._trusted_gateways
        )
        user, pair = await self._accounts.login(
            email=request.email, password=request.password, client_address=address
        )
        return identity_pb2.LoginResponse(
            access_token=pair.access, refresh_token=pair.refresh, user=user_to_proto(user)
        )

    async def RefreshToken(
        self, request: identity_pb2.RefreshTokenRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.RefreshTokenResponse:
        pair = await self._accounts.refresh(request.refresh_token)
        return identity_pb2.RefreshTokenResponse(
            access_token=pair.access, refresh_token=pair.refresh
        )

    async def RevokeToken(
        self, request: identity_pb2.RevokeTokenRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.RevokeTokenResponse:
        await self._accounts.revoke(current_claims(), request.refresh_token)
        return identity_pb2.RevokeTokenResponse()

    async def VerifyToken(
        self, request: identity_pb2.VerifyTokenRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.VerifyTokenResponse:
        if request.token_type == identity_pb2.TOKEN_TYPE_REFRESH:
            claims = await self._accounts.verify_refresh(request.token)
        else:
            claims = self._verifier.verify(request.token, "access")
        return identity_pb2.VerifyTokenResponse(
            user_id=claims.user_id,
            role=ROLE_TO_PROTO.get(claims.role, identity_pb2.ROLE_UNSPECIFIED),
            expires_at=to_timestamp(claims.expires_at),
        )

    async def GetUser(
        self, request: identity_pb2.GetUserRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.GetUserResponse:
        user = await self._accounts.get_user(current_claims(), request.user_id)
        return identity_pb2.GetUserResponse(user=user_to_proto(user))

    async def GetJwks(
        self, request: identity_pb2.GetJwksRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.GetJwksResponse:
        return identity_pb2.GetJwksResponse(jwks_json=self._jwks.document())

    async def VerifyRefreshToken(
        self, request: identity_pb2.VerifyRefreshTokenRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.VerifyRefreshTokenResponse:
        claims = await self._accounts.verify_refresh(request.refresh_token)
        return identity_pb2.VerifyRefreshTokenResponse(
            user_id=claims.user_id, expires_at=to_timestamp(claims.expires_at)
        )

    async def ListUsers(
        self, request: identity_pb2.ListUsersRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.ListUsersResponse:
        role = PROTO_TO_ROLE.get(request.role)
        users, total = await self._administration.list_users(
            current_claims(),
            search=request.search,
            role=Role(role) if role else None,
            is_active=request.is_active if request.HasField("is_active") else None,
            page=request.page,
            page_size=request.page_size,
        )
        return identity_pb2.ListUsersResponse(
            users=[user_to_proto(user) for user in users], total_count=total
        )

    async def SetUserActive(
        self, request: identity_pb2.SetUserActiveRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.SetUserActiveResponse:
        user = await self._administration.set_active(
            current_claims(), request.user_id, request.is_active
        )
        return identity_pb2.SetUserActiveResponse(user=user_to_proto(user))

    async def ChangePassword(
        self, request: identity_pb2.ChangePasswordRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.ChangePasswordResponse:
        await self._accounts.change_password(
            current_claims(),
            current_password=request.current_password,
            new_password=request.new_password,
            new_password_confirm=request.new_password_confirm,
        )
        return identity_pb2.ChangePasswordResponse()

    async def RequestPasswordReset(
        self, request: identity_pb2.RequestPasswordResetRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.RequestPasswordResetResponse:
        await self._resets.request(request.email)
        return identity_pb2.RequestPasswordResetResponse()

    async def ConfirmPasswordReset(
        self, request: identity_pb2.ConfirmPasswordResetRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.ConfirmPasswordResetResponse:
        await self._resets.confirm(
            code=request.code,
            new_password=request.new_password,
            new_password_confirm=request.new_password_confirm,
        )
        return identity_pb2.ConfirmPasswordResetResponse()
