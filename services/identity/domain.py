"""Identity rules: who may register with what, and how emails compare. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from email_validator import EmailNotValidError, validate_email

from libs.claims import Claims, Role
from libs.errors import NON_FIELD, FailedPrecondition, FieldErrorCollector, PermissionDenied
from libs.text import text_problem
from services.identity.password_policy import PASSWORD_MAX, PASSWORD_MIN, password_problems

__all__ = ["PASSWORD_MAX", "PASSWORD_MIN", "password_problems"]

EMAIL_MAX = 254
FULL_NAME_MAX = 255
PASSWORDS_DIFFER = "Passwords do not match."
WRONG_CURRENT_PASSWORD = "Your current password is incorrect."
REQUIRED = "This field is required."
REGISTRABLE_ROLES = (Role.STUDENT, Role.INSTRUCTOR)
ADMINS_ONLY = "Only administrators can perform this action."
CANNOT_DEACTIVATE_SELF = "You cannot deactivate your own account."


@dataclass(frozen=True)
class NewUser:
    email: str
    full_name: str
    role: Role
    password: str


@dataclass(frozen=True)
class User:
    id: int
    email: str
    full_name: str
    role: str
    password_hash: str
    is_active: bool
    created_at: datetime
    updated_at: datetime
    last_login: datetime | None = None


def normalize_email(email: str) -> str:
    """The form emails are compared in: uniqueness and login are case-insensitive."""
    return email.strip().lower()


def email_problem(email: str) -> str | None:
    """Why `email` (already stripped) is not an acceptable address, or None."""
    if not email:
        return REQUIRED
    if len(email) > EMAIL_MAX:
        return f"Ensure this field has no more than {EMAIL_MAX} characters."
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError:
        return "Enter a valid email address."
    return None


def validate_registration(
    *, email: str, full_name: str, role: str, password: str, password_confirm: str
) -> NewUser:
    """Check every field and report all problems at once (InvalidArgument)."""
    errors = FieldErrorCollector()
    email = email.strip()
    if problem := email_problem(email):
        errors.add("email", problem)

    full_name = full_name.strip()
    if not full_name:
        errors.add("full_name", REQUIRED)
    elif len(full_name) > FULL_NAME_MAX:
        errors.add("full_name", f"Ensure this field has no more than {FULL_NAME_MAX} characters.")
    elif problem := text_problem(full_name):
        # A name goes into emails and logs; control characters (NUL, newlines) and bidi
        # overrides have no place there, and PostgreSQL cannot even store NUL.
        errors.add("full_name", problem)

    parsed_role: Role | None = None
    if not role:
        errors.add("role", REQUIRED)
    else:
        try:
            parsed_role = Role(role)
        except ValueError:
            parsed_role = None
        if parsed_role not in REGISTRABLE_ROLES:
            # Admins are made by `create-admin` only, never by signing up.
            errors.add("role", f'"{role}" is not a valid choice. Choose Student or Instructor.')

    for field, value in (("password", password), ("password_confirm", password_confirm)):
        if not value:
            errors.add(field, REQUIRED)
    if password:
        for problem in password_problems(password, email=email, full_name=full_name):
            errors.add("password", problem)
    if password and password_confirm and password != password_confirm:
        errors.add(NON_FIELD, PASSWORDS_DIFFER)

    errors.raise_if_any()
    assert parsed_role is not None
    return NewUser(email=email, full_name=full_name, role=parsed_role, password=password)


def validate_new_password(
    *, password: str, password_confirm: str, email: str, full_name: str
) -> None:
    """A password change or reset: the new password meets the policy (reported on `password`,
    as at registration) and its confirmation matches (`non_field_errors`)."""
    errors = FieldErrorCollector()
    if not password:
        errors.add("new_password", REQUIRED)
    if not password_confirm:
        errors.add("new_password_confirm", REQUIRED)
    if password:
        for problem in password_problems(password, email=email, full_name=full_name):
            errors.add("password", problem)
    if password and password_confirm and password != password_confirm:
        errors.add(NON_FIELD, PASSWORDS_DIFFER)
    errors.raise_if_any()


# --- administration -----------------------------------------------------------------------------


def ensure_admin(caller: Claims) -> None:
    if not caller.is_admin:
        raise PermissionDenied(ADMINS_ONLY)


def ensure_may_set_active(caller: Claims, user_id: int, is_active: bool) -> None:
    """An administrator may (de)activate anyone but cannot lock themselves out."""
    ensure_admin(caller)
    if user_id == caller.user_id and not is_active:
        raise FailedPrecondition.on_field("is_active", CANNOT_DEACTIVATE_SELF)


def may_read_user(caller: Claims, user_id: int) -> bool:
    """Users read themselves; administrators read everyone."""
    return user_id == caller.user_id or caller.is_admin
