"""Who is calling: the verified token's claims and the role names, free of any dependency.

Kept apart from libs/tokens.py (JWT, cryptography, settings) and libs/roles.py (the proto enum
mapping) so the services' domain rules can take a caller without importing either
(the import contracts in pyproject.toml hold them to it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

TokenKind = Literal["access", "refresh"]


class Role(StrEnum):
    STUDENT = "Student"
    INSTRUCTOR = "Instructor"
    # Made by `python -m services.identity create-admin`, never offered at registration.
    ADMIN = "Admin"


@dataclass(frozen=True)
class Claims:
    """What a verified token says about its holder."""

    user_id: int
    typ: TokenKind
    jti: str
    expires_at: datetime
    role: str = ""
    email: str = ""
    full_name: str = ""
    # `iat` (sub-second) and `sid` (the login's refresh family): what revocations name.
    issued_at: datetime | None = None
    session_id: str = ""

    @property
    def is_instructor(self) -> bool:
        return self.role == Role.INSTRUCTOR

    @property
    def is_student(self) -> bool:
        return self.role == Role.STUDENT

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN
