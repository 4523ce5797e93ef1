"""The verifier's side of revocations (libs/revocations.py, libs/tokens.py) on a private key
directory: which tokens a revocation covers, the sub-second `iat` that keeps a login right
after a revocation working, the verification cache honouring revocations, the wire encoding,
and forgetting only what can no longer matter. No server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from libs.claims import Claims
from libs.errors import Unauthenticated
from libs.revocations import (
    CLOCK_MARGIN_S,
    Revocation,
    RevocationList,
    decode,
    encode,
    session_revocation,
    user_revocation,
)
from libs.settings import Settings
from libs.signing_keys import ensure_signing_key
from libs.tokens import TokenIssuer, TokenVerifier, issuer_from_settings, verifier_from_settings
from tests.identity_tokens import split

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


def access(issuer: TokenIssuer, user_id: int, session: str, now: datetime | None = None) -> str:
    return issuer.issue_access(
        user_id=user_id,
        role="Student",
        email="sam@example.com",
        full_name="Sam",
        session_id=session,
        now=now,
    )


def accepted(verifier: TokenVerifier, token: str) -> bool:
    try:
        verifier.verify(token)
    except Unauthenticated:
        return False
    return True


def test_tokens_carry_their_session_and_a_sub_second_issue_time(
    issuer: TokenIssuer, verifier: TokenVerifier
) -> None:
    now = datetime.now(UTC).replace(microsecond=250_000) - timedelta(seconds=1)
    token = access(issuer, 7, "family-1", now=now)
    _, payload, _ = split(token)
    assert payload["sid"] == "family-1"
    claims = verifier.verify(token)
    assert claims.session_id == "family-1"
    assert claims.issued_at == now
    refresh, _ = issuer.issue_refresh(user_id=7, jti="j1", session_id="family-1", now=now)
    assert split(refresh)[1]["iat"] == now.timestamp()  # 0.25 s kept
    assert verifier.verify(refresh, "refresh").session_id == "family-1"


def test_a_session_revocation_covers_that_session_only(
    issuer: TokenIssuer, verifier: TokenVerifier
) -> None:
    ended, other_login = access(issuer, 7, "family-1"), access(issuer, 7, "family-2")
    someone_else = access(issuer, 8, "family-3")
    for token in (ended, other_login, someone_else):
        assert accepted(verifier, token)  # and cached
    verifier.revocations.add(session_revocation(7, "family-1", lifetime_s=930, reason="logout"))
    assert not accepted(verifier, ended)  # refused although its verification was cached
    assert accepted(verifier, other_login)
    assert accepted(verifier, someone_else)


def test_a_user_revocation_covers_tokens_issued_up_to_its_instant_only(
    issuer: TokenIssuer, verifier: TokenVerifier
) -> None:
    at = datetime.now(UTC)
    before = access(issuer, 7, "family-1", now=at - timedelta(milliseconds=300))
    same_second_after = access(issuer, 7, "family-2", now=at + timedelta(milliseconds=300))
    other_user = access(issuer, 8, "family-3", now=at - timedelta(seconds=5))
    verifier.revocations.add(
        user_revocation(7, lifetime_s=930, reason="deactivated", now=at.timestamp())
    )
    assert not accepted(verifier, before)
    # A login right after (a password change, a reactivation), even within the same second.
    assert accepted(verifier, same_second_after)
    assert accepted(verifier, other_user)


def test_revocations_apply_to_refresh_tokens_too(
    issuer: TokenIssuer, verifier: TokenVerifier
) -> None:
    refresh, _ = issuer.issue_refresh(user_id=7, jti="j1", session_id="family-1")
    verifier.revocations.add(session_revocation(7, "family-1", lifetime_s=930, reason="logout"))
    with pytest.raises(Unauthenticated):
        verifier.verify(refresh, "refresh")
    # A logout repeats fine: the signature alone can still be checked.
    assert verifier.verify(refresh, "refresh", revocations=False).session_id == "family-1"


def test_a_later_user_revocation_moves_the_instant_forward_never_back() -> None:
    revocations = RevocationList()
    revocations.add(user_revocation(7, lifetime_s=930, reason="a", now=2000.0))
    revocations.add(user_revocation(7, lifetime_s=930, reason="b", now=1000.0))  # late arrival

    def issued(at: float) -> Claims:
        return Claims(
            user_id=7,
            typ="access",
            jti="x",
            expires_at=datetime.fromtimestamp(at + 900, UTC),
            issued_at=datetime.fromtimestamp(at, UTC),
        )

    assert revocations.is_revoked(issued(1999.0))
    assert not revocations.is_revoked(issued(2000.5))


def test_the_wire_encoding_round_trips() -> None:
    for revocation in (
        session_revocation(7, "family-1", lifetime_s=930, reason="logout", now=1_800_000_000.5),
        user_revocation(8, lifetime_s=930, reason="deactivated", now=1_800_000_000.123456),
    ):
        decoded = decode(encode(revocation))
        assert decoded is not None
        assert decoded.user_id == revocation.user_id
        assert decoded.session_id == revocation.session_id
        assert decoded.reason == revocation.reason
        assert decoded.event_id == revocation.event_id
        assert decoded.expires_at == pytest.approx(revocation.expires_at, abs=1e-6)
        if revocation.issued_before is None:
            assert decoded.issued_before is None
        else:
            assert decoded.issued_before == pytest.approx(revocation.issued_before, abs=1e-6)
    # An entry naming neither a session nor an instant covers nothing.
    assert decode(encode(Revocation(user_id=9, event_id="e"))) is None


def test_only_revocations_whose_tokens_all_expired_are_forgotten() -> None:
    now = [1_800_000_000.0]
    revocations = RevocationList(clock=lambda: now[0])
    revocations.add(session_revocation(7, "family-1", lifetime_s=930, reason="x", now=now[0]))
    revocations.add(user_revocation(8, lifetime_s=930, reason="x", now=now[0]))
    now[0] += 930 + CLOCK_MARGIN_S - 1
    revocations.prune()
    assert len(revocations) == 2
    now[0] += 2
    revocations.prune()
    assert len(revocations) == 0
