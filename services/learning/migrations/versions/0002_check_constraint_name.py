"""lesson_progress: its CHECK constraint renamed to what the store declares (ck_lesson_progress_completed_at)

0001 spelled the full name, and the naming convention prefixed it again (ck_lesson_progress_ck_lesson_progress_completed_at).
Found by tests/test_schema_drift.py.

Revision ID: 0002
Revises: 0001
"""

from libs.migrations import rename_constraint

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

DOUBLED, DECLARED = (
    "ck_lesson_progress_ck_lesson_progress_completed_at",
    "ck_lesson_progress_completed_at",
)


def upgrade() -> None:
    rename_constraint("learning", "lesson_progress", DOUBLED, DECLARED)


def downgrade() -> None:
    rename_constraint("learning", "lesson_progress", DECLARED, DOUBLED)
