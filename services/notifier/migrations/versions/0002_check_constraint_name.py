"""notifications: its CHECK constraint renamed to what the store declares (ck_notifications_status)

0001 spelled the full name, and the naming convention prefixed it again (ck_notifications_ck_notifications_status).
Found by tests/test_schema_drift.py.

Revision ID: 0002
Revises: 0001
"""

from libs.migrations import rename_constraint

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

DOUBLED, DECLARED = "ck_notifications_ck_notifications_status", "ck_notifications_status"


def upgrade() -> None:
    rename_constraint("notifier", "notifications", DOUBLED, DECLARED)


def downgrade() -> None:
    rename_constraint("notifier", "notifications", DECLARED, DOUBLED)
