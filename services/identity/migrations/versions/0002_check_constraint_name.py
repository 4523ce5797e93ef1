"""users: its CHECK constraint renamed to what the store declares (ck_users_role)

0001 spelled the full name, and the naming convention prefixed it again (ck_users_ck_users_role).
Found by tests/test_schema_drift.py.

Revision ID: 0002
Revises: 0001
"""

from libs.migrations import rename_constraint

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

DOUBLED, DECLARED = "ck_users_ck_users_role", "ck_users_role"


def upgrade() -> None:
    rename_constraint("identity", "users", DOUBLED, DECLARED)


def downgrade() -> None:
    rename_constraint("identity", "users", DECLARED, DOUBLED)
