"""users: the Admin role and last_login (issue #14, administrators)

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SCHEMA = "identity"
CONSTRAINT = "ck_users_role"


def upgrade() -> None:
    op.drop_constraint(op.f(CONSTRAINT), "users", schema=SCHEMA, type_="check")
    op.create_check_constraint(
        op.f(CONSTRAINT), "users", "role IN ('Student', 'Instructor', 'Admin')", schema=SCHEMA
    )
    op.add_column("users", sa.Column("last_login", sa.DateTime(timezone=True)), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("users", "last_login", schema=SCHEMA)
    # The older schema knows no Admin: they become the least privileged role.
    op.execute(f"UPDATE {SCHEMA}.users SET role = 'Student' WHERE role = 'Admin'")
    op.drop_constraint(op.f(CONSTRAINT), "users", schema=SCHEMA, type_="check")
    op.create_check_constraint(
        op.f(CONSTRAINT), "users", "role IN ('Student', 'Instructor')", schema=SCHEMA
    )
