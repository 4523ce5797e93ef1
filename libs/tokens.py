"""JWT issue and verification: EdDSA only, `kid` in the header, a `typ` claim per token kind.

Verification pins the algorithm (so `alg: none` and HS256-with-the-public-key are refused), finds
the key by `kid` in the JWKS file (re-reading it once when a new kid shows up after a rotation),
checks issuer, audience and expiry with a small leeway, and checks `typ` so a refresh token is
never accepted where an access token is expected, or the other way round.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from libs.claims import Claims, TokenKind
from libs.errors import Unauthenticated
from libs.revocations import RevocationList
from libs.settings import Settings
from libs.signing_keys import JWKS_FILE, load_active_signing_key

ALGORITHM = "EdDSA"
INVALID_TOKEN = "Token is invalid or expired"


class TokenIssuer:
    def __init__(
        self,
        kid: str,
        private_key: Ed25519PrivateKey,
        *,
        issuer: str,
        audience: str,
        access_ttl_s: int,
        refresh_ttl_s: int,
    ) -> None:
        self._kid = kid
        self._key = private_key
        self._issuer = issuer
        self._audience = audience
        self._access_ttl = timedelta(seconds=access_ttl_s)
        self._refresh_ttl = timedelta(seconds=refresh_ttl_s)

    def _encode(self, claims: dict[str, Any], ttl: timedelta, now: datetime) -> str:
        payload = {
            **claims,
            "iss": self._issuer,
            "aud": self._audience,
            # Sub-second (RFC 7519 allows it): "tokens issued before T" must not catch a token
            # issued in the same second right after T (a login just after a password change).
            "iat": now.timestamp(),
            "nbf": now,
            "exp": now + ttl,
        }
        return jwt.encode(payload, self._key, algorithm=ALGORITHM, headers={"kid": self._kid})

    def issue_access(
        self,
        *,
        user_id: int,
        role: str,
        email: str,
        full_name: str,
        session_id: str = "",
        now: datetime | None = None,
    ) -> str:
        claims = {
            "sub": str(user_id),
            "typ": "access",
            "jti": uuid.uuid4().hex,
            # The login (refresh family) it belongs to: what a logout revokes.
            "sid": session_id,
            "role": role,
            "email": email,
            "name": full_name,
        }
        return self._encode(claims, self._access_ttl, now or datetime.now(UTC))

    def issue_refresh(
        self, *, user_id: int, jti: str, session_id: str = "", now: datetime | None = None
    ) -> tuple[str, datetime]:
        """A refresh token whose `jti` names its row in the identity store; returns its expiry."""
        now = now or datetime.now(UTC)
        token = self._encode(
            {"sub": str(user_id), "typ": "refresh", "jti": jti, "sid": session_id},
            self._refresh_ttl,
            now,
        )
        return token, now + self._refresh_ttl


class JwksFile:
    """Public keys from the JWKS file, re-read at most once a second when an unknown kid shows up,
    and at least every `max_age_s`, so a retired key stops verifying without a restart."""

    def __init__(
        self, keys_dir: Path, min_reload_interval_s: float = 1.0, max_age_s: float = 300.0
    ) -> None:
        self._path = keys_dir / JWKS_FILE
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._loaded_at = float("-inf")
        self._min_interval = min_reload_interval_s
        self._max_age = max_age_s

    def _reload(self) -> None:
        self._loaded_at = time.monotonic()
        try:
            document = json.loads(self._path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return
        keys: dict[str, Ed25519PublicKey] = {}
        for jwk in document.get("keys", []):
            if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519" and jwk.get("kid"):
                key = jwt.PyJWK(jwk, algorithm=ALGORITHM).key
                if isinstance(key, Ed25519PublicKey):
                    keys[jwk["kid"]] = key
        self._keys = keys

    def get(self, kid: str) -> Ed25519PublicKey | None:
        age = time.monotonic() - self._loaded_at
        if age >= self._max_age or (kid not in self._keys and age >= self._min_interval):
            self._reload()
        return self._keys.get(kid)

    def document(self) -> str:
        return self._path.read_text()


class TokenVerifier:
    """Verifies tokens; remembers the ones that passed for a short while.

    Every hop of a request (gateway, each service) verifies the same token, and a client sends
    the same token for many requests, so the signature check is mostly repeated work. A token that
    verified once verifies the same way until it expires; the only thing that can change the
    answer earlier is a key being retired, so entries live at most `cache_ttl_s` (and never past
    the token's own expiry). Failures are never cached. `cache_ttl_s=0` turns the cache off.

    Revocations (libs/revocations.py) are checked after the signature on every call, cache hits
    included, so a revoked token is refused as soon as this process has heard of it.
    """

    def __init__(
        self,
        keys: JwksFile,
        *,
        issuer: str,
        audience: str,
        leeway_s: int,
        cache_ttl_s: float = 60.0,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
        revocations: RevocationList | None = None,
    ) -> None:
        self.revocations = revocations if revocations is not None else RevocationList()
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_s
        self._cache_ttl = cache_ttl_s
        self._cache_size = cache_size
        self._clock = clock
        # (token, kind) -> (claims, wall-clock time until which they may be reused)
        self._cache: dict[tuple[str, str], tuple[Claims, float]] = {}

    def verify(
        self, token: str, expected: TokenKind = "access", *, revocations: bool = True
    ) -> Claims:
        """The token's claims, or Unauthenticated. `revocations=False` skips only the revocation
        check (a logout of an already revoked session, which is fine to repeat)."""
        claims = self._verify_cached(token, expected)
        if revocations and self.revocations.is_revoked(claims):
            raise Unauthenticated(INVALID_TOKEN)
        return claims

    def _verify_cached(self, token: str, expected: TokenKind) -> Claims:
        if self._cache_ttl <= 0:
            return self._verify(token, expected)
        now = self._clock()
        hit = self._cache.get((token, expected))
        if hit is not None and now < hit[1]:
            return hit[0]
        claims = self._verify(token, expected)
        if len(self._cache) >= self._cache_size:
            # Oldest first (dicts keep insertion order); good enough for a bounded memo.
            del self._cache[next(iter(self._cache))]
        usable_until = min(claims.expires_at.timestamp() + self._leeway, now + self._cache_ttl)
        self._cache[(token, expected)] = (claims, usable_until)
        return claims

    def _verify(self, token: str, expected: TokenKind) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated(INVALID_TOKEN) from exc
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or not isinstance(kid, str):
            raise Unauthenticated(INVALID_TOKEN)
        key = self._keys.get(kid)
        if key is None:
            raise Unauthenticated(INVALID_TOKEN)
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "sub", "jti", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(INVALID_TOKEN) from exc
        if payload.get("typ") != expected:
            raise Unauthenticated(INVALID_TOKEN)
        try:
            user_id = int(payload["sub"])
        except (TypeError, ValueError) as exc:
            raise Unauthenticated(INVALID_TOKEN) from exc
        return Claims(
            user_id=user_id,
            typ=expected,
            jti=str(payload["jti"]),
            expires_at=datetime.fromtimestamp(int(payload["exp"]), UTC),
            role=str(payload.get("role", "")),
            email=str(payload.get("email", "")),
            full_name=str(payload.get("name", "")),
            issued_at=_issued_at(payload["iat"]),
            session_id=str(payload.get("sid", "")),
        )


def _issued_at(value: object) -> datetime | None:
    # PyJWT has checked `iat` is a number; anything else is treated as unknown (and refused by
    # a revocation of the user's tokens).
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return None


def issuer_from_settings(settings: Settings, keys_dir: Path | None = None) -> TokenIssuer:
    """Identity's issuer: signs with the newest key of `keys_dir` (default: the settings' one)."""
    kid, private_key = load_active_signing_key(keys_dir or settings.jwt_keys_dir)
    return TokenIssuer(
        kid,
        private_key,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        access_ttl_s=settings.jwt_access_ttl_s,
        refresh_ttl_s=settings.jwt_refresh_ttl_s,
    )


def verifier_from_settings(settings: Settings) -> TokenVerifier:
    """The verifier every process builds from its Settings."""
    return TokenVerifier(
        JwksFile(settings.jwt_keys_dir),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway_s=settings.jwt_leeway_s,
    )
