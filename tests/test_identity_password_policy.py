"""The password policy (#14 item 2) as plain functions, and the client-address rules the login
throttle keys on: no server, no database."""

from __future__ import annotations

import pytest

from libs.client_address import (
    from_forwarded_for,
    from_grpc_peer,
    from_metadata,
    parse_networks,
)
from libs.errors import NON_FIELD, InvalidArgument
from services.identity.domain import validate_new_password, validate_registration
from services.identity.password_policy import (
    BLANK,
    LIKE_EMAIL,
    LIKE_NAME,
    TOO_COMMON,
    TOO_LONG,
    TOO_SHORT,
    password_problems,
)

pytestmark = pytest.mark.unit

EMAIL = "ann.smith@example.com"
NAME = "Ann Smith"


@pytest.mark.parametrize(
    "password",
    ["password", "12345678", "iloveyou1", "Password1", "qwertyuiop", "abcdefgh1", "xxxxxxxx"],
)
def test_common_passwords_are_refused_with_a_reason(password: str) -> None:
    [problem] = password_problems(password, email=EMAIL, full_name=NAME)
    assert problem.startswith(TOO_COMMON)
    assert problem.endswith(".")


@pytest.mark.parametrize("password", [" " * 8, "\t" * 10, " \n " * 4])
def test_blank_passwords_are_refused(password: str) -> None:
    assert password_problems(password, email=EMAIL, full_name=NAME) == [BLANK]


@pytest.mark.parametrize("password", [EMAIL, EMAIL.upper(), "ann.smith", "Ann.Smith"])
def test_the_email_or_its_local_part_is_refused(password: str) -> None:
    assert password_problems(password, email=EMAIL, full_name=NAME) == [LIKE_EMAIL]


@pytest.mark.parametrize("password", ["Ann Smith", "annsmith", "ANN SMITH", " ann smith "])
def test_the_name_is_refused(password: str) -> None:
    assert password_problems(password, email="x@example.com", full_name=NAME) == [LIKE_NAME]


def test_variations_of_the_users_own_words_are_weak() -> None:
    # zxcvbn gets the email and name as words to avoid: "AnnSmith2024" is not a strong password
    # for Ann Smith, though it might pass for someone else.
    [problem] = password_problems("annsmith2024", email=EMAIL, full_name=NAME)
    assert problem.startswith(TOO_COMMON)


def test_length_bounds() -> None:
    assert password_problems("k7#Qm2v", email=EMAIL, full_name=NAME) == [TOO_SHORT]
    assert password_problems("k7#Qm2vX", email=EMAIL, full_name=NAME) == []
    assert password_problems("Zq8-mv4r" * 16, email=EMAIL, full_name=NAME) == []
    assert password_problems("Zq8-mv4r" * 16 + "x", email=EMAIL, full_name=NAME) == [TOO_LONG]


@pytest.mark.parametrize(
    "password", ["correct-horse-42", "secret-pass-1", "Tr0ub4dor&3", "plane-river-violet"]
)
def test_strong_passwords_pass(password: str) -> None:
    assert password_problems(password, email=EMAIL, full_name=NAME) == []


def test_registration_reports_policy_problems_on_password() -> None:
    with pytest.raises(InvalidArgument) as refused:
        validate_registration(
            email=EMAIL,
            full_name=NAME,
            role="Student",
            password="password",
            password_confirm="password",
        )
    assert list(refused.value.field_errors) == ["password"]


def test_new_password_rules() -> None:
    with pytest.raises(InvalidArgument) as refused:
        validate_new_password(
            password="12345678", password_confirm="12345679", email=EMAIL, full_name=NAME
        )
    assert set(refused.value.field_errors) == {"password", NON_FIELD}
    with pytest.raises(InvalidArgument) as missing:
        validate_new_password(password="", password_confirm="", email=EMAIL, full_name=NAME)
    assert set(missing.value.field_errors) == {"new_password", "new_password_confirm"}
    validate_new_password(
        password="plane-river-violet",
        password_confirm="plane-river-violet",
        email=EMAIL,
        full_name=NAME,
    )


PROXIES = parse_networks("10.0.0.0/8, 127.0.0.1")


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("203.0.113.9", [], "203.0.113.9"),
        # An untrusted peer's header is ignored: clients cannot pick their address.
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),
        ("127.0.0.1", ["198.51.100.1"], "198.51.100.1"),
        # Right to left, past trusted proxies; what the client wrote itself (left) is ignored.
        ("127.0.0.1", ["6.6.6.6, 198.51.100.1, 10.1.2.3"], "198.51.100.1"),
        ("127.0.0.1", ["6.6.6.6", "198.51.100.1"], "198.51.100.1"),
        ("127.0.0.1", ["10.0.0.1, 10.0.0.2"], "10.0.0.1"),
        ("127.0.0.1", ["junk, 10.0.0.2"], "10.0.0.2"),
        ("127.0.0.1", ["::ffff:198.51.100.1"], "198.51.100.1"),
        ("127.0.0.1", [], "127.0.0.1"),
    ],
)
def test_forwarded_for_is_read_from_trusted_proxies_only(
    peer: str, forwarded: list[str], client: str
) -> None:
    assert from_forwarded_for(peer, forwarded, PROXIES) == client


def test_identity_believes_the_address_only_from_a_gateway() -> None:
    gateways = parse_networks("127.0.0.0/8")
    assert from_grpc_peer("ipv4:127.0.0.1:5555") == "127.0.0.1"
    assert from_grpc_peer("ipv6:[::1]:5555") == "::1"
    assert from_metadata("ipv4:127.0.0.1:5555", "2001:db8::1", gateways) == "2001:db8::1"
    assert from_metadata("ipv4:192.0.2.7:5555", "2001:db8::1", gateways) == "192.0.2.7"
    assert from_metadata("ipv4:127.0.0.1:5555", "not an address", gateways) == "127.0.0.1"
    assert from_metadata("ipv4:127.0.0.1:5555", None, gateways) == "127.0.0.1"
