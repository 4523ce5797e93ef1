"""rename the CHECK constraint of users to the name the naming convention gives

0001 spelled the full name, which the metadata's naming convention prefixed again
(ck_users_ck_users_role); the store declares ck_users_role. Found by tests/test_schema_drift.py.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        'ALTER TABLE "identity"."users" RENAME CONSTRAINT "ck_users_ck_users_role" TO "ck_users_role"'
    )


def downgrade() -> None:
    op.execute(
        'ALTER TABLE "identity"."users" RENAME CONSTRAINT "ck_users_role" TO "ck_users_ck_users_role"'
    )
