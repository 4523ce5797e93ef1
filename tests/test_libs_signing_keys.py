"""Signing keys on disk (libs/signing_keys.py): first key, rotation, retirement, the JWKS file."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from libs.errors import Unauthenticated
from libs.settings import Settings
from libs.signing_keys import (
    JWKS_FILE,
    ensure_signing_key,
    generate_signing_key,
    load_active_signing_key,
    write_jwks,
)
from libs.tokens import JwksFile, TokenVerifier, issuer_from_settings
from tests.identity_tokens import split

pytestmark = pytest.mark.unit

SETTINGS = Settings()
PUBLIC_JWK_MEMBERS = {"kty", "crv", "x", "kid", "alg", "use"}


def verifier(
    keys_dir: Path, max_age_s: float = 300.0, clock: Callable[[], float] = time.time
) -> TokenVerifier:
    return TokenVerifier(
        JwksFile(keys_dir, min_reload_interval_s=0, max_age_s=max_age_s),
        issuer=SETTINGS.jwt_issuer,
        audience=SETTINGS.jwt_audience,
        leeway_s=SETTINGS.jwt_leeway_s,
        clock=clock,
    )


def token(keys_dir: Path) -> str:
    return issuer_from_settings(SETTINGS, keys_dir).issue_access(
        user_id=1, role="Student", email="a@example.com", full_name="A"
    )


def jwks(keys_dir: Path) -> dict:
    return json.loads((keys_dir / JWKS_FILE).read_text())


def test_first_start_creates_one_key_and_keeps_it(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    ensure_signing_key(keys_dir)
    kid, _ = load_active_signing_key(keys_dir)
    ensure_signing_key(keys_dir)
    assert load_active_signing_key(keys_dir)[0] == kid
    assert [key["kid"] for key in jwks(keys_dir)["keys"]] == [kid]


def test_missing_jwks_is_rebuilt_from_the_private_keys(tmp_path: Path) -> None:
    ensure_signing_key(tmp_path)
    before = jwks(tmp_path)
    (tmp_path / JWKS_FILE).unlink()
    ensure_signing_key(tmp_path)
    assert jwks(tmp_path) == before


def test_no_key_yet_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no signing key"):
        load_active_signing_key(tmp_path)


def test_private_key_files_are_owner_only(tmp_path: Path) -> None:
    ensure_signing_key(tmp_path)
    (pem,) = tmp_path.glob("*.private.pem")
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600


def test_jwks_holds_public_keys_only(tmp_path: Path) -> None:
    ensure_signing_key(tmp_path)
    generate_signing_key(tmp_path)
    document = jwks(tmp_path)
    assert len(document["keys"]) == 2
    for key in document["keys"]:
        # "d" is the private part of an OKP key; nothing but the public members may appear.
        assert set(key) == PUBLIC_JWK_MEMBERS, key
        assert (key["kty"], key["crv"], key["alg"], key["use"]) == (
            "OKP",
            "Ed25519",
            "EdDSA",
            "sig",
        )
    text = (tmp_path / JWKS_FILE).read_text()
    assert "PRIVATE" not in text and '"d"' not in text
    # Each published key really is the public half of its private key.
    for key in document["keys"]:
        public = jwt.PyJWK(key).key
        pem = (tmp_path / f"{key['kid']}.private.pem").read_bytes()
        private = serialization.load_pem_private_key(pem, password=None)
        assert public.public_bytes_raw() == private.public_key().public_bytes_raw()


def test_rotation_signs_with_the_new_key_and_old_tokens_keep_verifying(tmp_path: Path) -> None:
    ensure_signing_key(tmp_path)
    old_kid, _ = load_active_signing_key(tmp_path)
    old_token = token(tmp_path)
    running = verifier(tmp_path)  # a verifier that loaded the JWKS before the rotation
    assert running.verify(old_token).user_id == 1

    new_kid = generate_signing_key(tmp_path)
    assert new_kid != old_kid
    assert load_active_signing_key(tmp_path)[0] == new_kid
    new_token = token(tmp_path)
    assert split(new_token)[0]["kid"] == new_kid
    assert split(old_token)[0]["kid"] == old_kid
    assert {key["kid"] for key in jwks(tmp_path)["keys"]} == {old_kid, new_kid}

    # Both verify: the running verifier picks the new kid up by itself, a fresh one has both.
    for checker in (running, verifier(tmp_path)):
        assert checker.verify(old_token).user_id == 1
        assert checker.verify(new_token).user_id == 1


def test_several_rotations_keep_creation_order(tmp_path: Path) -> None:
    kids = [generate_signing_key(tmp_path) for _ in range(5)]
    assert load_active_signing_key(tmp_path)[0] == kids[-1]
    assert [key["kid"] for key in jwks(tmp_path)["keys"]] == kids


def test_retired_key_stops_verifying(tmp_path: Path) -> None:
    ensure_signing_key(tmp_path)
    old_kid, _ = load_active_signing_key(tmp_path)
    old_token = token(tmp_path)
    now = [time.time()]
    running = verifier(tmp_path, max_age_s=0, clock=lambda: now[0])
    assert running.verify(old_token)
    generate_signing_key(tmp_path)
    new_token = token(tmp_path)

    # Retiring = deleting the private key file and republishing the JWKS.
    (tmp_path / f"{old_kid}.private.pem").unlink()
    write_jwks(tmp_path)
    # A token verified a moment ago is remembered for at most a minute...
    assert running.verify(old_token)
    # ...after which the retired key's tokens are refused.
    now[0] += 61
    with pytest.raises(Unauthenticated):
        running.verify(old_token)
    assert running.verify(new_token)
