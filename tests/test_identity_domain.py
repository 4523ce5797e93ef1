"""Identity's registration rules as plain functions: no server, no database."""

from __future__ import annotations

import pytest

from libs.errors import NON_FIELD, InvalidArgument
from services.identity.domain import (
    EMAIL_MAX,
    FULL_NAME_MAX,
    PASSWORD_MAX,
    PASSWORD_MIN,
    REQUIRED,
    NewUser,
    Role,
    normalize_email,
    password_problems,
    validate_registration,
)

pytestmark = pytest.mark.unit

GOOD = {
    "email": "ann@example.com",
    "full_name": "Ann Smith",
    "role": "Student",
    "password": "long-enough-1",
    "password_confirm": "long-enough-1",
}


def field_errors(**changes: str) -> dict[str, list[str]]:
    with pytest.raises(InvalidArgument) as caught:
        validate_registration(**{**GOOD, **changes})
    assert caught.value.message == "Validation error"
    return caught.value.field_errors


def test_valid_registration_is_accepted_and_trimmed() -> None:
    user = validate_registration(
        **{**GOOD, "email": "  ann@example.com ", "full_name": "  Ann Smith  "}
    )
    assert user == NewUser(
        email="ann@example.com", full_name="Ann Smith", role=Role.STUDENT, password="long-enough-1"
    )


@pytest.mark.parametrize("role", ["Student", "Instructor"])
def test_both_roles_are_accepted(role: str) -> None:
    assert validate_registration(**{**GOOD, "role": role}).role.value == role


@pytest.mark.parametrize(
    "email",
    ["not-an-email", "a@b", "ann@", "@example.com", "ann smith@example.com", "ann@exa mple.com"],
)
def test_invalid_email(email: str) -> None:
    assert field_errors(email=email) == {"email": ["Enter a valid email address."]}


def test_email_with_control_characters_is_invalid() -> None:
    assert "email" in field_errors(email="ann\x00@example.com")
    assert "email" in field_errors(email="ann@example.com\nBcc: x@example.com")


def test_email_too_long() -> None:
    email = "a" * (EMAIL_MAX - len("@example.com") + 1) + "@example.com"
    assert field_errors(email=email)["email"] == [
        f"Ensure this field has no more than {EMAIL_MAX} characters."
    ]


@pytest.mark.parametrize("field", ["email", "full_name", "role", "password", "password_confirm"])
def test_every_field_is_required(field: str) -> None:
    errors = field_errors(**{field: ""})
    assert errors[field] == [REQUIRED]


def test_blank_full_name_is_missing() -> None:
    assert field_errors(full_name="   ") == {"full_name": [REQUIRED]}


def test_full_name_length_limit() -> None:
    assert validate_registration(**{**GOOD, "full_name": "x" * FULL_NAME_MAX})
    assert field_errors(full_name="x" * (FULL_NAME_MAX + 1)) == {
        "full_name": [f"Ensure this field has no more than {FULL_NAME_MAX} characters."]
    }


@pytest.mark.parametrize("name", ["Ann\x00Smith", "Ann\nSmith", "Ann\rSmith", "Ann\x1bSmith"])
def test_full_name_with_control_characters_is_refused(name: str) -> None:
    assert field_errors(full_name=name) == {"full_name": ["Control characters are not allowed."]}


def test_full_name_may_be_any_script() -> None:
    assert validate_registration(**{**GOOD, "full_name": "Zoë Ødegård 山田"}).full_name


@pytest.mark.parametrize("role", ["student", "Admin", "STUDENT", "1"])
def test_unknown_role(role: str) -> None:
    (message,) = field_errors(role=role)["role"]
    assert "not a valid choice" in message


# Strong enough for the policy (services/identity/password_policy.py), at each length bound.
SHORTEST_STRONG = "k7#Qm2vX"
LONGEST_STRONG = "Zq8-mv4r" * (PASSWORD_MAX // 8)


def test_password_length_bounds() -> None:
    shortest = SHORTEST_STRONG
    longest = LONGEST_STRONG
    assert len(shortest) == PASSWORD_MIN
    assert len(longest) == PASSWORD_MAX
    assert validate_registration(**{**GOOD, "password": shortest, "password_confirm": shortest})
    assert validate_registration(**{**GOOD, "password": longest, "password_confirm": longest})

    short = "x" * (PASSWORD_MIN - 1)
    errors = field_errors(password=short, password_confirm=short)
    assert errors == {"password": [f"Ensure this field has at least {PASSWORD_MIN} characters."]}

    long = "y" * (PASSWORD_MAX + 1)
    errors = field_errors(password=long, password_confirm=long)
    assert errors == {
        "password": [f"Ensure this field has no more than {PASSWORD_MAX} characters."]
    }


def test_password_problems_lists_each_rule() -> None:
    assert password_problems(SHORTEST_STRONG) == []
    assert len(password_problems("x")) == 1
    assert len(password_problems("x" * (PASSWORD_MAX + 1))) == 1


def test_password_mismatch_is_a_non_field_error() -> None:
    errors = field_errors(password_confirm="something-else-1")
    assert errors == {NON_FIELD: ["Passwords do not match."]}


def test_short_and_mismatched_reports_both() -> None:
    errors = field_errors(password="short", password_confirm="other")
    assert set(errors) == {"password", NON_FIELD}


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_registration(
            email="bad", full_name="", role="Admin", password="short", password_confirm=""
        )
    assert set(caught.value.field_errors) == {
        "email",
        "full_name",
        "role",
        "password",
        "password_confirm",
    }


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("Ann@Example.COM", "ann@example.com"),
        ("  ann@example.com\t", "ann@example.com"),
        ("ANN.SMITH+tag@EXAMPLE.com", "ann.smith+tag@example.com"),
    ],
)
def test_emails_compare_case_insensitively(raw: str, normalized: str) -> None:
    assert normalize_email(raw) == normalized
