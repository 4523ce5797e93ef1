"""enrollments.withdrawn_at, and the indexes of a course's roster

Withdrawing is a state of the enrollment, not a delete: the row and its progress stay, so
enrolling again returns the same enrollment (same id, progress and completed_at). The roster
reads a course's active enrollments in the default order (enrolled_at) and by student name
through these partial indexes.

Revision ID: 0004
Revises: 0002 (re-chained after 0003 at merge)
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEMA = "learning"
ACTIVE = sa.text("withdrawn_at IS NULL")


def upgrade() -> None:
    op.add_column(
        "enrollments", sa.Column("withdrawn_at", sa.DateTime(timezone=True)), schema=SCHEMA
    )
    op.create_index(
        "ix_enrollments_course_active_enrolled",
        "enrollments",
        ["course_id", "enrolled_at", "id"],
        schema=SCHEMA,
        postgresql_where=ACTIVE,
    )
    op.create_index(
        "ix_enrollments_course_active_name",
        "enrollments",
        ["course_id", "student_name", "id"],
        schema=SCHEMA,
        postgresql_where=ACTIVE,
    )


def downgrade() -> None:
    op.drop_index("ix_enrollments_course_active_name", "enrollments", schema=SCHEMA)
    op.drop_index("ix_enrollments_course_active_enrolled", "enrollments", schema=SCHEMA)
    op.drop_column("enrollments", "withdrawn_at", schema=SCHEMA)
