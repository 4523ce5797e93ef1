"""The two roles, as every layer spells them: tokens and REST use the names, protos the enum."""

from __future__ import annotations

from enum import StrEnum

from courseplatform.identity.v1 import identity_pb2


class Role(StrEnum):
    STUDENT = "Student"
    INSTRUCTOR = "Instructor"


ROLE_TO_PROTO: dict[str, identity_pb2.Role] = {
    Role.STUDENT: identity_pb2.ROLE_STUDENT,
    Role.INSTRUCTOR: identity_pb2.ROLE_INSTRUCTOR,
}
PROTO_TO_ROLE: dict[int, str] = {value: str(key) for key, value in ROLE_TO_PROTO.items()}
