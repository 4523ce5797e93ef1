"""The Ed25519 keys that sign access and refresh tokens, kept as files in one directory.

Layout of `keys_dir`:
  <kid>.private.pem   one per key; only the identity service reads these
  jwks.json           the public half of every key, which every verifier reads

Key ids start with a UTC timestamp, so the newest key sorts last and is the one that signs.
Rotation adds a key; older keys stay in the JWKS, so tokens they signed keep verifying until
they expire. Retiring a key is deleting its .pem file and rewriting the JWKS.

In Kubernetes the directory is read-only (a Secret and a ConfigMap projected into one volume), so
identity must find both there and write nothing; `python -m libs.signing_keys rotate|retire`
prepares them on the operator's machine instead (docs/deploy.md "Signing keys").
"""

from __future__ import annotations

import argparse
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


def generate_signing_key(keys_dir: Path, jwks_path: Path | None = None) -> str:
    """Create a new key, make it the active one, and republish the JWKS (by default
    `keys_dir/jwks.json`). Returns its kid."""
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
    write_jwks(keys_dir, jwks_path)
    return kid


def ensure_signing_key(keys_dir: Path) -> None:
    """Generate the first key on first start; keep whatever is there otherwise.

    Refuses to go on when the active key is not in the JWKS: tokens it signed would verify
    nowhere (in Kubernetes: the key Secret was updated before the JWKS ConfigMap)."""
    if not _private_key_files(keys_dir):
        try:
            generate_signing_key(keys_dir)
        except OSError as exc:
            raise RuntimeError(
                f"no signing key in {keys_dir} and none can be created there ({exc}); "
                "make one with `python -m libs.signing_keys rotate --dir DIR` and mount it"
            ) from exc
    elif not (keys_dir / JWKS_FILE).exists():
        write_jwks(keys_dir)
    kid = _kid_of(_private_key_files(keys_dir)[-1])
    if kid not in published_kids(keys_dir / JWKS_FILE):
        raise RuntimeError(
            f"the active signing key {kid} is not in {keys_dir / JWKS_FILE}: publish the JWKS "
            "(to every verifier) before the key that signs"
        )


def published_kids(jwks_path: Path) -> list[str]:
    """The key ids a JWKS file publishes, in file order."""
    document = json.loads(jwks_path.read_text())
    return [str(key.get("kid")) for key in document.get("keys", [])]


def load_active_signing_key(keys_dir: Path) -> tuple[str, Ed25519PrivateKey]:
    files = _private_key_files(keys_dir)
    if not files:
        raise FileNotFoundError(f"no signing key in {keys_dir}; run the identity service once")
    newest = files[-1]
    key = serialization.load_pem_private_key(newest.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return _kid_of(newest), key


def write_jwks(keys_dir: Path, jwks_path: Path | None = None) -> None:
    """Publish the public half of every key in `keys_dir` (by default to `keys_dir/jwks.json`)."""
    target = jwks_path or keys_dir / JWKS_FILE
    keys = []
    for path in _private_key_files(keys_dir):
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(private, Ed25519PrivateKey)
        jwk = json.loads(OKPAlgorithm.to_jwk(private.public_key()))
        jwk.update({"kid": _kid_of(path), "alg": "EdDSA", "use": "sig"})
        keys.append(jwk)
    # Write then rename, so a verifier never reads a half-written file.
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps({"keys": keys}, indent=2))
    tmp.replace(target)


def retire_signing_key(keys_dir: Path, kid: str, jwks_path: Path | None = None) -> None:
    """Delete one key that no longer signs and republish the JWKS without it."""
    files = _private_key_files(keys_dir)
    path = keys_dir / f"{kid}{_PRIVATE_SUFFIX}"
    if path not in files:
        raise ValueError(f"no key {kid} in {keys_dir}")
    if path == files[-1]:
        raise ValueError(f"{kid} is the active signing key; rotate first, then retire it")
    path.unlink()
    write_jwks(keys_dir, jwks_path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m libs.signing_keys",
        description="Prepare signing keys outside the identity service (e.g. for Kubernetes).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    rotate = commands.add_parser("rotate", help="add a key that signs from now on; prints its kid")
    retire = commands.add_parser("retire", help="delete an older key and republish the JWKS")
    retire.add_argument("kid")
    for command in (rotate, retire):
        command.add_argument("--dir", type=Path, required=True, help="the private keys")
        command.add_argument(
            "--jwks", type=Path, default=None, help="where the JWKS goes (default DIR/jwks.json)"
        )
    args = parser.parse_args(argv)
    if args.command == "rotate":
        print(generate_signing_key(args.dir, args.jwks))
        return
    try:
        retire_signing_key(args.dir, args.kid, args.jwks)
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")


if __name__ == "__main__":
    main()
