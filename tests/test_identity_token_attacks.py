"""Forged, expired and misused tokens: refused by the gateway (401) and, independently, by the
identity service itself when called directly over gRPC (UNAUTHENTICATED)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import pytest
from courseplatform.identity.v1 import identity_pb2, identity_pb2_grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from libs.settings import Settings
from libs.signing_keys import load_active_signing_key
from libs.tokens import TokenIssuer, issuer_from_settings
from tests.conftest import User, assert_error_body, register_and_login
from tests.identity_tokens import eddsa, hs256, split, unsigned, with_payload


@pytest.fixture
async def identity(
    services: dict[str, str],
) -> AsyncIterator[identity_pb2_grpc.IdentityServiceStub]:
    async with grpc.aio.insecure_channel(services["identity"]) as channel:
        yield identity_pb2_grpc.IdentityServiceStub(channel)


def public_key_bytes(settings: Settings) -> dict[str, bytes]:
    public = load_active_signing_key(settings.jwt_keys_dir)[1].public_key()
    return {
        "raw": public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        "pem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    }


def expired_access(settings: Settings, user: User) -> str:
    long_ago = datetime.now(UTC) - timedelta(
        seconds=settings.jwt_access_ttl_s + settings.jwt_leeway_s + 60
    )
    return issuer_from_settings(settings).issue_access(
        user_id=user.id, role=user.role, email=user.email, full_name=user.full_name, now=long_ago
    )


def foreign_key_same_kid(settings: Settings, user: User) -> str:
    kid = split(user.access)[0]["kid"]
    impostor = TokenIssuer(
        kid,
        Ed25519PrivateKey.generate(),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        access_ttl_s=300,
        refresh_ttl_s=300,
    )
    return impostor.issue_access(
        user_id=user.id, role="Instructor", email=user.email, full_name=user.full_name
    )


def unknown_kid(settings: Settings, user: User) -> str:
    # Signed with the real key, so only the unknown kid can make it fail.
    header, payload, _ = split(user.access)
    _, key = load_active_signing_key(settings.jwt_keys_dir)
    return eddsa({**header, "kid": "not-a-published-key"}, payload, key)


# name -> how to build the bad access token from a fresh user's real one
ATTACKS: dict[str, Callable[[Settings, User], str]] = {
    "alg-none": lambda s, u: unsigned(*split(u.access)[:2]),
    "alg-none-no-kid": lambda s, u: unsigned({"alg": "none", "typ": "JWT"}, split(u.access)[1]),
    "hs256-public-key-raw": lambda s, u: hs256(
        split(u.access)[0], split(u.access)[1], public_key_bytes(s)["raw"]
    ),
    "hs256-public-key-pem": lambda s, u: hs256(
        split(u.access)[0], split(u.access)[1], public_key_bytes(s)["pem"]
    ),
    "expired": expired_access,
    "unknown-kid": unknown_kid,
    "tampered-role": lambda s, u: with_payload(u.access, role="Instructor"),
    "tampered-subject": lambda s, u: with_payload(u.access, sub=str(u.id + 1)),
    "tampered-expiry": lambda s, u: with_payload(u.access, exp=4_102_444_800),
    "signature-stripped": lambda s, u: u.access.rsplit(".", 1)[0] + ".",
    "foreign-key-same-kid": foreign_key_same_kid,
    "refresh-as-access": lambda s, u: u.refresh,
}


@pytest.fixture
async def victim(client: httpx.AsyncClient) -> User:
    return await register_and_login(client, "Student")


async def test_the_untouched_token_works(
    client: httpx.AsyncClient, identity: identity_pb2_grpc.IdentityServiceStub, victim: User
) -> None:
    """Control: the real token passes both checks, so each refusal below is the attack's doing."""
    assert (await client.get("/api/users/me/", headers=victim.headers)).status_code == 200
    reply = await identity.GetUser(
        identity_pb2.GetUserRequest(),
        metadata=(("authorization", f"Bearer {victim.access}"),),
        timeout=5,
    )
    assert reply.user.id == victim.id


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_bad_access_token_is_refused_by_the_gateway(
    client: httpx.AsyncClient, settings: Settings, victim: User, attack: str
) -> None:
    token = ATTACKS[attack](settings, victim)
    response = await client.get("/api/users/me/", headers={"Authorization": f"Bearer {token}"})
    assert_error_body(response, 401)


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_bad_access_token_is_refused_by_the_service(
    identity: identity_pb2_grpc.IdentityServiceStub, settings: Settings, victim: User, attack: str
) -> None:
    token = ATTACKS[attack](settings, victim)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.GetUser(
            identity_pb2.GetUserRequest(),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=5,
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("attack", [name for name in ATTACKS if name != "refresh-as-access"])
async def test_bad_token_fails_verify(
    client: httpx.AsyncClient, settings: Settings, victim: User, attack: str
) -> None:
    token = ATTACKS[attack](settings, victim)
    assert_error_body(await client.post("/api/token/verify/", json={"token": token}), 401)


# Refresh-token misuse ---------------------------------------------------------------------------


async def refresh_rest(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/api/token/refresh/", json={"refresh": token})


async def refresh_grpc_code(
    identity: identity_pb2_grpc.IdentityServiceStub, token: str
) -> grpc.StatusCode:
    try:
        await identity.RefreshToken(
            identity_pb2.RefreshTokenRequest(refresh_token=token), timeout=5
        )
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_access_token_used_for_refresh(
    client: httpx.AsyncClient, identity: identity_pb2_grpc.IdentityServiceStub, victim: User
) -> None:
    assert_error_body(await refresh_rest(client, victim.access), 401)
    assert await refresh_grpc_code(identity, victim.access) == grpc.StatusCode.UNAUTHENTICATED


async def test_reused_refresh_token_revokes_the_whole_family(
    client: httpx.AsyncClient, identity: identity_pb2_grpc.IdentityServiceStub, victim: User
) -> None:
    first = await refresh_rest(client, victim.refresh)
    assert first.status_code == 200
    successor = first.json()["refresh"]

    # The spent token comes back (a thief replaying a copy): refused...
    assert_error_body(await refresh_rest(client, victim.refresh), 401)
    # ...and the legitimate successor is revoked with it, so the thief's copy is worthless too.
    assert_error_body(await refresh_rest(client, successor), 401)
    assert await refresh_grpc_code(identity, successor) == grpc.StatusCode.UNAUTHENTICATED
    assert await refresh_grpc_code(identity, victim.refresh) == grpc.StatusCode.UNAUTHENTICATED


async def test_reuse_is_detected_over_grpc_too(
    identity: identity_pb2_grpc.IdentityServiceStub, client: httpx.AsyncClient
) -> None:
    user = await register_and_login(client)
    assert await refresh_grpc_code(identity, user.refresh) == grpc.StatusCode.OK
    assert await refresh_grpc_code(identity, user.refresh) == grpc.StatusCode.UNAUTHENTICATED


async def test_refresh_after_logout(
    client: httpx.AsyncClient, identity: identity_pb2_grpc.IdentityServiceStub, victim: User
) -> None:
    response = await client.post(
        "/api/auth/logout/", json={"refresh": victim.refresh}, headers=victim.headers
    )
    assert response.status_code == 204
    assert_error_body(await refresh_rest(client, victim.refresh), 401)
    assert await refresh_grpc_code(identity, victim.refresh) == grpc.StatusCode.UNAUTHENTICATED


async def test_revoke_over_grpc_then_refresh(
    identity: identity_pb2_grpc.IdentityServiceStub, client: httpx.AsyncClient
) -> None:
    user = await register_and_login(client)
    await identity.RevokeToken(
        identity_pb2.RevokeTokenRequest(refresh_token=user.refresh),
        metadata=(("authorization", f"Bearer {user.access}"),),
        timeout=5,
    )
    assert await refresh_grpc_code(identity, user.refresh) == grpc.StatusCode.UNAUTHENTICATED


async def test_expired_refresh_token(
    client: httpx.AsyncClient,
    identity: identity_pb2_grpc.IdentityServiceStub,
    settings: Settings,
    victim: User,
) -> None:
    jti = split(victim.refresh)[1]["jti"]
    long_ago = datetime.now(UTC) - timedelta(
        seconds=settings.jwt_refresh_ttl_s + settings.jwt_leeway_s + 60
    )
    expired, _ = issuer_from_settings(settings).issue_refresh(
        user_id=victim.id, jti=jti, now=long_ago
    )
    assert_error_body(await refresh_rest(client, expired), 401)
    assert await refresh_grpc_code(identity, expired) == grpc.StatusCode.UNAUTHENTICATED


async def test_validly_signed_refresh_that_was_never_issued(
    client: httpx.AsyncClient,
    identity: identity_pb2_grpc.IdentityServiceStub,
    settings: Settings,
    victim: User,
) -> None:
    """Defence in depth: even a token signed with the real key needs its row in the store."""
    minted, _ = issuer_from_settings(settings).issue_refresh(user_id=victim.id, jti="never-issued")
    assert_error_body(await refresh_rest(client, minted), 401)
    assert await refresh_grpc_code(identity, minted) == grpc.StatusCode.UNAUTHENTICATED


async def test_refresh_row_of_another_user(
    client: httpx.AsyncClient, settings: Settings, victim: User
) -> None:
    """A token naming someone else's row (only possible with the signing key) is refused."""
    attacker = await register_and_login(client)
    jti = split(victim.refresh)[1]["jti"]
    minted, _ = issuer_from_settings(settings).issue_refresh(user_id=attacker.id, jti=jti)
    assert_error_body(await refresh_rest(client, minted), 401)
    # The victim's own token is untouched by the attempt.
    assert (await refresh_rest(client, victim.refresh)).status_code == 200


@pytest.mark.parametrize(
    "attack", ["alg-none", "hs256-public-key-raw", "tampered-subject", "foreign-key-same-kid"]
)
async def test_forged_refresh_tokens(
    client: httpx.AsyncClient,
    identity: identity_pb2_grpc.IdentityServiceStub,
    settings: Settings,
    victim: User,
    attack: str,
) -> None:
    as_refresh = User(**{**victim.__dict__, "access": victim.refresh})
    forged = ATTACKS[attack](settings, as_refresh)
    assert_error_body(await refresh_rest(client, forged), 401)
    assert await refresh_grpc_code(identity, forged) == grpc.StatusCode.UNAUTHENTICATED
    # None of this spent or revoked the real token.
    assert (await refresh_rest(client, victim.refresh)).status_code == 200
