"""The Ed25519 keys that sign access and refresh tokens, kept as files in one directory.

Layout of `keys_dir`:
  <kid>.private.pem   one per key; only the identity service reads these
  jwks.json           the public half of every key, which every verifier reads

Key ids start with a UTC timestamp, so the newest key sorts last and is the one that signs.
Rotation adds a key; older keys stay in the JWKS, so tokens they signed keep verifying until
they expire. Retiring a key is deleting its .pem file and rewriting the JWKS.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

JWKS_FILE = "jwks.json"
_PRIVATE_SUFFIX = ".private.pem"


def _private_key_files(keys_dir: Path) -> list[Path]:
    return sorted(keys_dir.glob(f"*{_PRIVATE_SUFFIX}"))


def _kid_of(path: Path) -> str:
    return path.name.removesuffix(_PRIVATE_SUFFIX)


def generate_signing_key(keys_dir: Path) -> str:
    """Create a new key, make it the active one, and republish the JWKS. Returns its kid."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    # Microseconds keep two keys made within one second in creation order (older kids without
    # them still sort first: "-" sorts before any digit).
    kid = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{secrets.token_hex(4)}"
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = keys_dir / f"{kid}{_PRIVATE_SUFFIX}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    write_jwks(keys_dir)
    return kid


def ensure_signing_key(keys_dir: Path) -> None:
    """Generate the first key on first start; keep whatever is there otherwise."""
    if not _private_key_files(keys_dir):
        generate_signing_key(keys_dir)
    elif not (keys_dir / JWKS_FILE).exists():
        write_jwks(keys_dir)


def load_active_signing_key(keys_dir: Path) -> tuple[str, Ed25519PrivateKey]:
    files = _private_key_files(keys_dir)
    if not files:
        raise FileNotFoundError(f"no signing key in {keys_dir}; run the identity service once")
    newest = files[-1]
    key = serialization.load_pem_private_key(newest.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return _kid_of(newest), key


def write_jwks(keys_dir: Path) -> None:
    keys = []
    for path in _private_key_files(keys_dir):
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(private, Ed25519PrivateKey)
        jwk = json.loads(OKPAlgorithm.to_jwk(private.public_key()))
        jwk.update({"kid": _kid_of(path), "alg": "EdDSA", "use": "sig"})
        keys.append(jwk)
    # Write then rename, so a verifier never reads a half-written file.
    tmp = keys_dir / f".{JWKS_FILE}.tmp"
    tmp.write_text(json.dumps({"keys": keys}, indent=2))
    tmp.replace(keys_dir / JWKS_FILE)
