"""`python -m services.identity create-admin --email E --full-name N` (`make createsuperuser`).

Creates an active administrator, or promotes the user who has that email (role Admin, active,
the given name and password; their refresh tokens are revoked, so every session logs in again;
access tokens already out keep their old role for at most JWT_ACCESS_TTL_S, which grants
nothing new). The password is never an argument (it would sit in the shell history and in
`ps`): with stdin not a terminal one line is read from it, else it is asked twice.

The database is DATABASE_URL's, or the embedded server `make run` and `make migrate` use.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Callable
from typing import TextIO

from sqlalchemy.exc import ProgrammingError

from libs.claims import Role
from libs.db import create_engine, session_factory, transaction
from libs.devstack import Stack
from libs.errors import DomainError
from libs.settings import Settings
from services.identity import store
from services.identity.domain import (
    User,
    normalize_email,
    password_problems,
    validate_registration,
)
from services.identity.passwords import Passwords


class CommandError(Exception):
    """What the command prints (prefixed `create-admin: `) before exiting with status 1."""


def read_password(stdin: TextIO, ask: Callable[[str], str] = getpass.getpass) -> str:
    if not stdin.isatty():
        # One line; only the line ending is dropped (spaces are part of a password).
        return stdin.readline().rstrip("\r\n")
    first = ask("Password: ")
    if ask("Password (again): ") != first:
        raise CommandError("the two passwords do not match")
    return first


def checked(email: str, full_name: str, password: str) -> tuple[str, str]:
    """The normalised email and name, or CommandError saying every problem."""
    problems: list[str] = []
    try:
        # The registration rules for the email and name (the role is not the user's choice here).
        new_user = validate_registration(
            email=email,
            full_name=full_name,
            role=Role.STUDENT,
            password=password or "-",
            password_confirm=password or "-",
        )
    except DomainError as error:
        problems += [f"{field}: {m}" for field, ms in error.field_errors.items() for m in ms]
        new_user = None
    if not password:
        problems.append("password: a password is required")
    else:
        problems += [
            f"password: {m}" for m in password_problems(password, email=email, full_name=full_name)
        ]
    if problems or new_user is None:
        raise CommandError("; ".join(dict.fromkeys(problems)))
    return normalize_email(new_user.email), new_user.full_name


async def create_admin(
    settings: Settings, *, email: str, full_name: str, password: str
) -> tuple[User, bool]:
    """The administrator, and whether it was created (False: an existing user promoted)."""
    email, full_name = checked(email, full_name, password)
    password_hash = await Passwords(settings).hash(password)
    engine = create_engine(settings, "identity-create-admin")
    try:
        async with transaction(session_factory(engine)) as session:
            existing = await store.user_by_email(session, email)
            if existing is None:
                user = await store.insert_user(
                    session,
                    email=email,
                    full_name=full_name,
                    role=Role.ADMIN.value,
                    password_hash=password_hash,
                )
                return user, True
            user = await store.make_admin(
                session, existing.id, full_name=full_name, password_hash=password_hash
            )
            await store.revoke_user_refresh_tokens(session, existing.id)
            return user, False
    except ProgrammingError as error:
        problem = f"the identity schema is missing or old, run `make migrate` first ({error.orig})"
        raise CommandError(problem) from None
    finally:
        await engine.dispose()


def main(email: str, full_name: str, stdin: TextIO = sys.stdin) -> None:
    try:
        password = read_password(stdin)
        checked(email, full_name, password)  # before any server is started
        stack = Stack()
        stack.provide_servers(need_redis=False)
        try:
            settings = Settings(database_url=stack.env["DATABASE_URL"])
            user, created = asyncio.run(
                create_admin(settings, email=email, full_name=full_name, password=password)
            )
        finally:
            stack.stop_servers()
    except (CommandError, store.EmailTaken) as error:
        sys.exit(f"create-admin: {error or 'that email was taken meanwhile'}")
    except (EOFError, KeyboardInterrupt):
        sys.exit("create-admin: no password given")
    verb = "created administrator" if created else "promoted to administrator:"
    print(f"{verb} {user.email} (id {user.id})")
