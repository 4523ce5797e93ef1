"""Key preparation for Kubernetes: `python -m libs.signing_keys`, the read-only key volume, and a
verifier following a ConfigMap update in place (docs/deploy.md "Signing keys")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from libs.settings import Settings
from libs.signing_keys import JWKS_FILE, ensure_signing_key, load_active_signing_key
from libs.tokens import JwksFile, TokenVerifier, issuer_from_settings

SETTINGS = Settings()


def keys_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "libs.signing_keys", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def kids(jwks_path: Path) -> list[str]:
    return [key["kid"] for key in json.loads(jwks_path.read_text())["keys"]]


def token(keys_dir: Path) -> str:
    return issuer_from_settings(SETTINGS, keys_dir).issue_access(
        user_id=7, role="Student", email="s@example.com", full_name="S"
    )


def publish(volume: Path, files: dict[str, bytes]) -> None:
    """What kubelet does for a ConfigMap/Secret volume: write a new timestamped directory, then
    swap the `..data` symlink atomically; the visible names are symlinks through `..data`."""
    stamp = volume / f"..{time.monotonic_ns()}"
    stamp.mkdir()
    for name, content in files.items():
        (stamp / name).write_bytes(content)
    tmp_link = volume / "..data_tmp"
    tmp_link.symlink_to(stamp.name)
    tmp_link.replace(volume / "..data")
    for name in files:
        link = volume / name
        if not link.is_symlink():
            link.symlink_to(f"..data/{name}")


def test_rotate_writes_keys_and_jwks_where_asked(tmp_path: Path) -> None:
    keys, jwks = tmp_path / "keys", tmp_path / "jwks.json"
    first = keys_cli("rotate", "--dir", str(keys), "--jwks", str(jwks))
    assert first.returncode == 0, first.stderr
    kid1 = first.stdout.strip()
    second = keys_cli("rotate", "--dir", str(keys), "--jwks", str(jwks))
    kid2 = second.stdout.strip()
    # Only private keys in the key dir (so `--from-file=keys/` makes a clean Secret).
    assert sorted(p.name for p in keys.iterdir()) == sorted(
        f"{kid}.private.pem" for kid in (kid1, kid2)
    )
    assert kids(jwks) == [kid1, kid2]
    assert load_active_signing_key(keys)[0] == kid2


def test_retire_drops_an_old_key_and_refuses_the_active_one(tmp_path: Path) -> None:
    keys, jwks = tmp_path / "keys", tmp_path / "jwks.json"
    kid1 = keys_cli("rotate", "--dir", str(keys), "--jwks", str(jwks)).stdout.strip()
    kid2 = keys_cli("rotate", "--dir", str(keys), "--jwks", str(jwks)).stdout.strip()
    refused = keys_cli("retire", kid2, "--dir", str(keys), "--jwks", str(jwks))
    assert refused.returncode == 2 and "active signing key" in refused.stderr
    unknown = keys_cli("retire", "nope", "--dir", str(keys), "--jwks", str(jwks))
    assert unknown.returncode == 2 and "no key nope" in unknown.stderr
    done = keys_cli("retire", kid1, "--dir", str(keys), "--jwks", str(jwks))
    assert done.returncode == 0, done.stderr
    assert kids(jwks) == [kid2]
    assert [p.name for p in keys.iterdir()] == [f"{kid2}.private.pem"]


def test_identity_writes_nothing_into_a_complete_key_volume(tmp_path: Path) -> None:
    staging, jwks = tmp_path / "staging", tmp_path / "jwks.json"
    keys_cli("rotate", "--dir", str(staging), "--jwks", str(jwks))
    volume = tmp_path / "volume"  # identity's projected Secret + ConfigMap
    volume.mkdir()
    files = {p.name: p.read_bytes() for p in staging.iterdir()}
    publish(volume, {**files, JWKS_FILE: jwks.read_bytes()})
    before = {p.name: p.lstat().st_mtime_ns for p in volume.rglob("*")}
    ensure_signing_key(volume)
    assert {p.name: p.lstat().st_mtime_ns for p in volume.rglob("*")} == before
    assert load_active_signing_key(volume)[0] == kids(jwks)[0]


def test_no_key_and_nowhere_to_write_one_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(RuntimeError, match=r"python -m libs\.signing_keys rotate"):
        ensure_signing_key(blocker / "keys")


def test_a_key_the_jwks_does_not_publish_stops_identity(tmp_path: Path) -> None:
    """The Secret got the new key before the ConfigMap got its public half: identity must not
    start signing tokens that no verifier accepts."""
    keys_cli("rotate", "--dir", str(tmp_path))
    stale = (tmp_path / JWKS_FILE).read_bytes()
    new_kid = keys_cli("rotate", "--dir", str(tmp_path)).stdout.strip()
    (tmp_path / JWKS_FILE).write_bytes(stale)
    with pytest.raises(RuntimeError, match=f"{new_kid} is not in"):
        ensure_signing_key(tmp_path)
    from services.identity.server import build_server

    with pytest.raises(RuntimeError, match="publish the JWKS"):
        build_server(SETTINGS.model_copy(update={"jwt_keys_dir": tmp_path}))


def test_a_running_verifier_follows_a_configmap_update_in_place(tmp_path: Path) -> None:
    """Rotation in Kubernetes: the new JWKS reaches the verifier's mounted ConfigMap (a symlink
    swap), identity restarts with the new key, and a verifier that never restarted accepts both
    the old and the new tokens."""
    keys, jwks = tmp_path / "keys", tmp_path / "jwks.json"
    keys_cli("rotate", "--dir", str(keys), "--jwks", str(jwks))
    old_token = token(keys)
    mounted = tmp_path / "verifier-mount"
    mounted.mkdir()
    publish(mounted, {JWKS_FILE: jwks.read_bytes()})
    running = TokenVerifier(
        JwksFile(mounted, min_reload_interval_s=0),
        issuer=SETTINGS.jwt_issuer,
        audience=SETTINGS.jwt_audience,
        leeway_s=SETTINGS.jwt_leeway_s,
    )
    assert running.verify(old_token).user_id == 7

    keys_cli("rotate", "--dir", str(keys), "--jwks", str(jwks))
    publish(mounted, {JWKS_FILE: jwks.read_bytes()})  # ConfigMap first ...
    new_token = token(keys)  # ... then identity signs with the new key
    assert running.verify(new_token).user_id == 7
    assert running.verify(old_token).user_id == 7
    assert os.path.islink(mounted / JWKS_FILE)
