"""rename the CHECK constraint of notifications to the name the naming convention gives

0001 spelled the full name, which the metadata's naming convention prefixed again
(ck_notifications_ck_notifications_status); the store declares ck_notifications_status. Found by tests/test_schema_drift.py.

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
        'ALTER TABLE "notifier"."notifications" RENAME CONSTRAINT "ck_notifications_ck_notifications_status" TO "ck_notifications_status"'
    )


def downgrade() -> None:
    op.execute(
        'ALTER TABLE "notifier"."notifications" RENAME CONSTRAINT "ck_notifications_status" TO "ck_notifications_ck_notifications_status"'
    )
