"""rename the CHECK constraint of lesson_progress to the name the naming convention gives

0001 spelled the full name, which the metadata's naming convention prefixed again
(ck_lesson_progress_ck_lesson_progress_completed_at); the store declares ck_lesson_progress_completed_at. Found by tests/test_schema_drift.py.

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
        'ALTER TABLE "learning"."lesson_progress" RENAME CONSTRAINT "ck_lesson_progress_ck_lesson_progress_completed_at" TO "ck_lesson_progress_completed_at"'
    )


def downgrade() -> None:
    op.execute(
        'ALTER TABLE "learning"."lesson_progress" RENAME CONSTRAINT "ck_lesson_progress_completed_at" TO "ck_lesson_progress_ck_lesson_progress_completed_at"'
    )
