"""Helpers for identity tests: issuers on a key directory, and hand-made (forged) JWTs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def unb64url_json(segment: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def split(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    return unb64url_json(header), unb64url_json(payload), signature


def unsigned(header: dict[str, Any], payload: dict[str, Any]) -> str:
    """`alg: none`: header and payload with an empty signature."""
    return f"{b64url_json({**header, 'alg': 'none'})}.{b64url_json(payload)}."


def hs256(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    """Signed with HMAC-SHA256 over `secret` (the classic key-confusion attack when the secret
    is the server's public key)."""
    signing_input = f"{b64url_json({**header, 'alg': 'HS256'})}.{b64url_json(payload)}"
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def eddsa(header: dict[str, Any], payload: dict[str, Any], key: Ed25519PrivateKey) -> str:
    """Signed with a real Ed25519 key but with any header at all (PyJWT would vet it)."""
    signing_input = f"{b64url_json(header)}.{b64url_json(payload)}"
    return f"{signing_input}.{b64url(key.sign(signing_input.encode('ascii')))}"


def with_payload(token: str, **changes: Any) -> str:
    """The token with payload claims changed and the original signature kept."""
    header, payload, signature = token.split(".")
    return f"{header}.{b64url_json({**unb64url_json(payload), **changes})}.{signature}"


def timestamp(value: datetime) -> int:
    return int(value.timestamp())
