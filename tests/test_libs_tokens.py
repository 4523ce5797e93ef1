"""JWT issue and verification (libs/tokens.py) on a private key directory: no server."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from libs.errors import Unauthenticated
from libs.settings import Settings
from libs.signing_keys import ensure_signing_key, load_active_signing_key
from libs.tokens import (
    ALGORITHM,
    JwksFile,
    TokenIssuer,
    TokenVerifier,
    issuer_from_settings,
    verifier_from_settings,
)
from tests.identity_tokens import eddsa, hs256, split, timestamp, unsigned, with_payload

pytestmark = pytest.mark.unit

SETTINGS = Settings(jwt_access_ttl_s=900, jwt_refresh_ttl_s=3600, jwt_leeway_s=30)


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    ensure_signing_key(tmp_path)
    return tmp_path


@pytest.fixture
def issuer(keys_dir: Path) -> TokenIssuer:
    return issuer_from_settings(SETTINGS, keys_dir)


@pytest.fixture
def verifier(keys_dir: Path) -> TokenVerifier:
    return verifier_from_settings(SETTINGS.model_copy(update={"jwt_keys_dir": keys_dir}))


def access(issuer: TokenIssuer, now: datetime | None = None) -> str:
    return issuer.issue_access(
        user_id=42, role="Instructor", email="ann@example.com", full_name="Ann Smith", now=now
    )


def refused(verifier: TokenVerifier, token: str, expected: str = "access") -> None:
    with pytest.raises(Unauthenticated):
        verifier.verify(token, expected)  # type: ignore[arg-type]


def test_access_token_round_trip(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    claims = verifier.verify(access(issuer, now))
    assert claims.user_id == 42
    assert claims.typ == "access"
    assert claims.role == "Instructor" and claims.is_instructor and not claims.is_student
    assert claims.email == "ann@example.com"
    assert claims.full_name == "Ann Smith"
    assert claims.jti
    assert claims.expires_at == now + timedelta(seconds=SETTINGS.jwt_access_ttl_s)


def test_every_access_token_has_its_own_jti(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    assert verifier.verify(access(issuer)).jti != verifier.verify(access(issuer)).jti


def test_refresh_token_round_trip(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    token, expires_at = issuer.issue_refresh(user_id=7, jti="row-id-1", now=now)
    assert expires_at == now + timedelta(seconds=SETTINGS.jwt_refresh_ttl_s)
    claims = verifier.verify(token, "refresh")
    assert (claims.user_id, claims.typ, claims.jti) == (7, "refresh", "row-id-1")
    assert claims.expires_at == expires_at
    # A refresh token carries no profile: it is only good for getting a new access token.
    assert claims.role == claims.email == claims.full_name == ""


def test_header_names_algorithm_and_active_kid(keys_dir: Path, issuer: TokenIssuer) -> None:
    header, payload, _ = split(access(issuer))
    assert header["alg"] == ALGORITHM == "EdDSA"
    assert header["kid"] == load_active_signing_key(keys_dir)[0]
    assert payload["typ"] == "access"
    assert payload["iss"] == SETTINGS.jwt_issuer and payload["aud"] == SETTINGS.jwt_audience
    assert payload["sub"] == "42"


def test_typ_keeps_the_two_kinds_apart(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    refresh, _ = issuer.issue_refresh(user_id=7, jti="row-id-2")
    refused(verifier, refresh, "access")
    refused(verifier, access(issuer), "refresh")


def test_expiry_allows_the_leeway_and_no_more(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    ttl = timedelta(seconds=SETTINGS.jwt_access_ttl_s)
    leeway = timedelta(seconds=SETTINGS.jwt_leeway_s)
    now = datetime.now(UTC)
    # Expired a little less than the leeway ago: a skewed clock still accepts it.
    assert verifier.verify(access(issuer, now - ttl - leeway + timedelta(seconds=10)))
    refused(verifier, access(issuer, now - ttl - leeway - timedelta(seconds=10)))
    refused(verifier, access(issuer, now - timedelta(days=1)))


def test_token_from_the_future_is_refused(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    # nbf = iat = issue time: a token minted well ahead of our clock is not valid yet.
    refused(verifier, access(issuer, datetime.now(UTC) + timedelta(minutes=10)))


def test_wrong_issuer_or_audience_is_refused(keys_dir: Path) -> None:
    kid, key = load_active_signing_key(keys_dir)
    verifier = verifier_from_settings(SETTINGS.model_copy(update={"jwt_keys_dir": keys_dir}))
    for iss, aud in (("someone-else", SETTINGS.jwt_audience), (SETTINGS.jwt_issuer, "other")):
        foreign = TokenIssuer(kid, key, issuer=iss, audience=aud, access_ttl_s=60, refresh_ttl_s=60)
        refused(verifier, access(foreign))


def test_alg_none_is_refused(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    header, payload, _ = split(access(issuer))
    refused(verifier, unsigned(header, payload))


def test_hs256_with_the_public_key_is_refused(keys_dir: Path, issuer: TokenIssuer) -> None:
    verifier = verifier_from_settings(SETTINGS.model_copy(update={"jwt_keys_dir": keys_dir}))
    header, payload, _ = split(access(issuer))
    public = load_active_signing_key(keys_dir)[1].public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for secret in (raw, pem, (keys_dir / "jwks.json").read_bytes()):
        refused(verifier, hs256(header, payload, secret))


def test_tampered_payload_is_refused(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    student = issuer.issue_access(user_id=5, role="Student", email="s@example.com", full_name="S")
    refused(verifier, with_payload(student, role="Instructor"))
    refused(verifier, with_payload(student, sub="1"))
    refused(verifier, with_payload(student, typ="refresh"), "refresh")


def test_another_key_claiming_our_kid_is_refused(
    issuer: TokenIssuer, verifier: TokenVerifier
) -> None:
    kid = split(access(issuer))[0]["kid"]
    impostor = TokenIssuer(
        kid,
        Ed25519PrivateKey.generate(),
        issuer=SETTINGS.jwt_issuer,
        audience=SETTINGS.jwt_audience,
        access_ttl_s=60,
        refresh_ttl_s=60,
    )
    refused(verifier, access(impostor))


@pytest.mark.parametrize("kid", ["no-such-key", "../jwks.json", "", None, 5])
def test_unknown_or_malformed_kid_is_refused(
    keys_dir: Path, verifier: TokenVerifier, kid: object
) -> None:
    real_kid, key = load_active_signing_key(keys_dir)
    payload = {
        "sub": "1",
        "typ": "access",
        "jti": "x",
        "iss": SETTINGS.jwt_issuer,
        "aud": SETTINGS.jwt_audience,
        "iat": timestamp(datetime.now(UTC)),
        "exp": timestamp(datetime.now(UTC) + timedelta(minutes=5)),
    }
    # The same token under the real kid verifies, so only the kid is at fault below.
    assert verifier.verify(eddsa({"alg": ALGORITHM, "kid": real_kid}, payload, key))
    header = {"alg": ALGORITHM, "typ": "JWT"} if kid is None else {"alg": ALGORITHM, "kid": kid}
    refused(verifier, eddsa(header, payload, key))


@pytest.mark.parametrize("missing", ["exp", "sub", "jti", "iss", "aud", "iat"])
def test_required_claims(keys_dir: Path, verifier: TokenVerifier, missing: str) -> None:
    kid, key = load_active_signing_key(keys_dir)
    payload = {
        "sub": "1",
        "typ": "access",
        "jti": "x",
        "iss": SETTINGS.jwt_issuer,
        "aud": SETTINGS.jwt_audience,
        "iat": datetime.now(UTC),
        "exp": datetime.now(UTC) + timedelta(minutes=5),
    }
    assert verifier.verify(jwt.encode(payload, key, algorithm=ALGORITHM, headers={"kid": kid}))
    del payload[missing]
    refused(verifier, jwt.encode(payload, key, algorithm=ALGORITHM, headers={"kid": kid}))


def test_non_numeric_subject_is_refused(keys_dir: Path, verifier: TokenVerifier) -> None:
    kid, key = load_active_signing_key(keys_dir)
    payload = {
        "sub": "admin",
        "typ": "access",
        "jti": "x",
        "iss": SETTINGS.jwt_issuer,
        "aud": SETTINGS.jwt_audience,
        "iat": datetime.now(UTC),
        "exp": datetime.now(UTC) + timedelta(minutes=5),
    }
    refused(verifier, jwt.encode(payload, key, algorithm=ALGORITHM, headers={"kid": kid}))


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "a.b", "....", "é.é.é", "x" * 10_000])
def test_garbage_is_refused(verifier: TokenVerifier, garbage: str) -> None:
    refused(verifier, garbage)


def test_missing_jwks_file_refuses_instead_of_crashing(tmp_path: Path, issuer: TokenIssuer) -> None:
    empty_dir = tmp_path / "empty"
    empty = verifier_from_settings(SETTINGS.model_copy(update={"jwt_keys_dir": empty_dir}))
    refused(empty, access(issuer))


def test_remembered_token_is_refused_once_it_expires(tmp_path: Path) -> None:
    """The verification cache never outlives the token: past its expiry it is refused."""
    ensure_signing_key(tmp_path)
    kid, key = load_active_signing_key(tmp_path)
    issuer = TokenIssuer(kid, key, issuer="iss", audience="aud", access_ttl_s=60, refresh_ttl_s=60)
    checker = TokenVerifier(JwksFile(tmp_path), issuer="iss", audience="aud", leeway_s=0)
    # Issued 59 s ago with a 60 s lifetime: it expires about a second from now.
    token = issuer.issue_access(
        user_id=7,
        role="Student",
        email="s@example.com",
        full_name="S",
        now=datetime.now(UTC) - timedelta(seconds=59),
    )
    assert checker.verify(token).user_id == 7
    assert checker.verify(token).user_id == 7  # remembered
    with pytest.raises(Unauthenticated):
        checker.verify(token, "refresh")  # the kind is part of what is remembered
    time.sleep(1.5)
    with pytest.raises(Unauthenticated):
        checker.verify(token)
