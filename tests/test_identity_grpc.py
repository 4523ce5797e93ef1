"""The identity gRPC server called directly, as grpcurl or another service would."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from courseplatform.identity.v1 import identity_pb2, identity_pb2_grpc
from google.protobuf import descriptor_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from libs.grpc_errors import decode_rpc_error
from tests.conftest import TEST_PASSWORD, unique_email

SERVICE = "courseplatform.identity.v1.IdentityService"


@pytest.fixture
async def channel(services: dict[str, str]) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(services["identity"]) as opened:
        yield opened


@pytest.fixture
def identity(channel: grpc.aio.Channel) -> identity_pb2_grpc.IdentityServiceStub:
    return identity_pb2_grpc.IdentityServiceStub(channel)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def register(
    identity: identity_pb2_grpc.IdentityServiceStub, email: str | None = None, **changes: object
) -> identity_pb2.RegisterResponse:
    fields = {
        "email": unique_email("grpc") if email is None else email,
        "full_name": "Grace Hopper",
        "role": identity_pb2.ROLE_STUDENT,
        "password": TEST_PASSWORD,
        "password_confirm": TEST_PASSWORD,
        **changes,
    }
    return await identity.Register(identity_pb2.RegisterRequest(**fields), timeout=10)


async def login(
    identity: identity_pb2_grpc.IdentityServiceStub, email: str
) -> identity_pb2.LoginResponse:
    return await identity.Login(
        identity_pb2.LoginRequest(email=email, password=TEST_PASSWORD), timeout=10
    )


async def reflection_ask(
    channel: grpc.aio.Channel, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo(timeout=5)
    await call.write(request)
    await call.done_writing()
    response = await call.read()
    assert response is not grpc.aio.EOF
    return response


async def test_reflection_lists_the_service(channel: grpc.aio.Channel) -> None:
    response = await reflection_ask(
        channel, reflection_pb2.ServerReflectionRequest(list_services="")
    )
    names = {service.name for service in response.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


async def test_reflection_describes_the_service(channel: grpc.aio.Channel) -> None:
    # What `grpcurl describe` asks: the file that defines the symbol.
    response = await reflection_ask(
        channel, reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE)
    )
    files = response.file_descriptor_response.file_descriptor_proto
    assert files, response
    described = [descriptor_pb2.FileDescriptorProto.FromString(raw) for raw in files]
    methods = {
        method.name
        for file in described
        for service in file.service
        if service.name == "IdentityService"
        for method in service.method
    }
    assert methods == {
        "Register",
        "Login",
        "RefreshToken",
        "RevokeToken",
        "VerifyToken",
        "GetUser",
        "GetJwks",
        "VerifyRefreshToken",
        "ListUsers",
        "SetUserActive",
        "ChangePassword",
        "RequestPasswordReset",
        "ConfirmPasswordReset",
    }


@pytest.mark.parametrize("service", ["", SERVICE])
async def test_health_is_serving(channel: grpc.aio.Channel, service: str) -> None:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=5
    )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_get_user_without_token_is_unauthenticated(
    identity: identity_pb2_grpc.IdentityServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.GetUser(identity_pb2.GetUserRequest(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    "metadata",
    [
        (("authorization", "Bearer"),),
        (("authorization", "Bearer "),),
        (("authorization", "Basic dXNlcjpwYXNz"),),
        (("authorization", "Token abc"),),
        (("authorization", "Bearer not.a.jwt"),),
    ],
)
async def test_malformed_authorization_is_unauthenticated(
    identity: identity_pb2_grpc.IdentityServiceStub, metadata: tuple[tuple[str, str], ...]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.GetUser(identity_pb2.GetUserRequest(), metadata=metadata, timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("method", ["RevokeToken", "VerifyToken", "GetUser"])
async def test_every_private_method_needs_a_token(
    identity: identity_pb2_grpc.IdentityServiceStub, method: str
) -> None:
    request_type = getattr(identity_pb2, f"{method}Request")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(identity, method)(request_type(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_register_bad_email_is_invalid_argument_with_field_violation(
    identity: identity_pb2_grpc.IdentityServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await register(identity, email="not-an-email")
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT

    # Decoded with grpcio-status alone, as any client would.
    status = rpc_status.from_call(error)
    assert status is not None and status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    (detail,) = status.details
    assert detail.Is(error_details_pb2.BadRequest.DESCRIPTOR)
    bad_request = error_details_pb2.BadRequest()
    detail.Unpack(bad_request)
    assert [violation.field for violation in bad_request.field_violations] == ["email"]

    # And with the shared decoder the gateway uses.
    failure = decode_rpc_error(error)
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.message == "Validation error"
    assert failure.field_errors == {"email": ["Enter a valid email address."]}


async def test_register_reports_every_bad_field(
    identity: identity_pb2_grpc.IdentityServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await register(
            identity,
            email="",
            full_name="",
            role=identity_pb2.ROLE_UNSPECIFIED,
            password="short",
            password_confirm="other",
        )
    failure = decode_rpc_error(caught.value)
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(failure.field_errors) == {
        "email",
        "full_name",
        "role",
        "password",
        "non_field_errors",
    }


async def test_register_unknown_role_number_is_invalid_argument(
    identity: identity_pb2_grpc.IdentityServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await register(identity, role=99)
    failure = decode_rpc_error(caught.value)
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(failure.field_errors) == {"role"}


async def test_duplicate_email_is_failed_precondition_on_email(
    identity: identity_pb2_grpc.IdentityServiceStub,
) -> None:
    email = unique_email("dup")
    await register(identity, email=email)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await register(identity, email=email.upper())
    failure = decode_rpc_error(caught.value)
    assert failure.code == grpc.StatusCode.FAILED_PRECONDITION
    assert failure.field_errors == {"email": ["A user with this email already exists."]}


async def test_register_login_and_read_yourself(
    identity: identity_pb2_grpc.IdentityServiceStub,
) -> None:
    email = unique_email("Grpc")
    registered = (await register(identity, email=email, role=identity_pb2.ROLE_INSTRUCTOR)).user
    assert registered.id > 0
    assert registered.email == email.lower()
    assert registered.role == identity_pb2.ROLE_INSTRUCTOR
    assert registered.is_active
    assert registered.created_at.seconds > 0

    logged_in = await login(identity, email.upper())
    assert logged_in.user == registered
    assert logged_in.access_token and logged_in.refresh_token

    me = await identity.GetUser(
        identity_pb2.GetUserRequest(), metadata=bearer(logged_in.access_token), timeout=5
    )
    assert me.user.last_login.seconds >= registered.created_at.seconds  # the login just made
    me.user.ClearField("last_login")
    assert me.user == registered
    explicit = await identity.GetUser(
        identity_pb2.GetUserRequest(user_id=registered.id),
        metadata=bearer(logged_in.access_token),
        timeout=5,
    )
    explicit.user.ClearField("last_login")
    assert explicit.user == registered


async def test_get_user_of_someone_else_is_permission_denied(
    identity: identity_pb2_grpc.IdentityServiceStub,
) -> None:
    first = (await register(identity)).user
    second_email = unique_email("other")
    await register(identity, email=second_email)
    tokens = await login(identity, second_email)
    for user_id in (first.id, -1, 2**63 - 1):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await identity.GetUser(
                identity_pb2.GetUserRequest(user_id=user_id),
                metadata=bearer(tokens.access_token),
                timeout=5,
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_wrong_password_and_unknown_user_look_the_same(
    identity: identity_pb2_grpc.IdentityServiceStub,
) -> None:
    email = unique_email("pw")
    await register(identity, email=email)
    answers = []
    for who, password in ((email, "wrong-password-1"), (unique_email("nobody"), TEST_PASSWORD)):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await identity.Login(identity_pb2.LoginRequest(email=who, password=password))
        answers.append((caught.value.code(), caught.value.details()))
    assert answers[0] == answers[1]
    assert answers[0][0] == grpc.StatusCode.UNAUTHENTICATED


async def test_login_with_nul_in_email_is_unauthenticated_not_internal(
    identity: identity_pb2_grpc.IdentityServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.Login(identity_pb2.LoginRequest(email="a\x00b@example.com", password="x"))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_register_with_nul_in_full_name_is_invalid_argument(
    identity: identity_pb2_grpc.IdentityServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await register(identity, full_name="Grace\x00Hopper")
    failure = decode_rpc_error(caught.value)
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(failure.field_errors) == {"full_name"}


async def test_verify_token_reports_claims(
    identity: identity_pb2_grpc.IdentityServiceStub,
) -> None:
    email = unique_email("verify")
    user = (await register(identity, email=email)).user
    tokens = await login(identity, email)
    access = await identity.VerifyToken(
        identity_pb2.VerifyTokenRequest(token=tokens.access_token),
        metadata=bearer(tokens.access_token),
        timeout=5,
    )
    assert (access.user_id, access.role) == (user.id, identity_pb2.ROLE_STUDENT)
    assert access.expires_at.seconds > 0
    refresh = await identity.VerifyToken(
        identity_pb2.VerifyTokenRequest(
            token=tokens.refresh_token, token_type=identity_pb2.TOKEN_TYPE_REFRESH
        ),
        metadata=bearer(tokens.access_token),
        timeout=5,
    )
    assert refresh.user_id == user.id
    # A refresh token does not pass as an access token.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.VerifyToken(
            identity_pb2.VerifyTokenRequest(token=tokens.refresh_token),
            metadata=bearer(tokens.access_token),
            timeout=5,
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_get_jwks_is_public(identity: identity_pb2_grpc.IdentityServiceStub) -> None:
    reply = await identity.GetJwks(identity_pb2.GetJwksRequest(), timeout=5)
    keys = json.loads(reply.jwks_json)["keys"]
    assert keys and all(key["kid"] and "d" not in key for key in keys)


async def test_request_id_metadata_is_accepted(
    identity: identity_pb2_grpc.IdentityServiceStub,
) -> None:
    reply = await identity.GetJwks(
        identity_pb2.GetJwksRequest(),
        metadata=(("x-request-id", f"test-{uuid.uuid4().hex}"),),
        timeout=5,
    )
    assert reply.jwks_json
