"""The roles on the wire: tokens and REST use the names (libs/claims.py), protos the enum."""

from __future__ import annotations

from courseplatform.identity.v1 import identity_pb2

from libs.claims import Role

ROLE_TO_PROTO: dict[str, identity_pb2.Role] = {
    Role.STUDENT: identity_pb2.ROLE_STUDENT,
    Role.INSTRUCTOR: identity_pb2.ROLE_INSTRUCTOR,
    Role.ADMIN: identity_pb2.ROLE_ADMIN,
}
PROTO_TO_ROLE: dict[int, str] = {value: str(key) for key, value in ROLE_TO_PROTO.items()}
