"""enrollments.withdrawn_at, the indexes of a course's roster, and the counts behind its statistics

Withdrawing is a state of the enrollment, not a delete: the row and its progress stay, so
enrolling again returns the same enrollment (same id, progress and completed_at). The roster
reads a course's active enrollments in the default order (enrolled_at) and by student name
through these partial indexes.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
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
    op.create_table(
        "course_counts",
        sa.Column("course_id", sa.BigInteger, nullable=False),
        sa.Column("enrollments", sa.Integer, nullable=False, server_default="0"),
        sa.Column("completed", sa.Integer, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("course_id", name="pk_course_counts"),
        schema=SCHEMA,
    )
    op.create_table(
        "course_lesson_counts",
        sa.Column("course_id", sa.BigInteger, nullable=False),
        sa.Column("lesson_id", sa.BigInteger, nullable=False),
        sa.Column("completed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("completed_in_completed", sa.Integer, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("course_id", "lesson_id", name="pk_course_lesson_counts"),
        schema=SCHEMA,
    )
    for statement in BACKFILL:
        op.execute(statement)


# The counts of the rows there are (every enrollment is active: withdrawn_at is new). The bench
# seeds its roster course's counts the same way (tests/bench/roster_scenarios.py).
BACKFILL = (
    f"""
INSERT INTO {SCHEMA}.course_counts (course_id, enrollments, completed)
SELECT course_id, count(*) FILTER (WHERE withdrawn_at IS NULL),
       count(*) FILTER (WHERE withdrawn_at IS NULL AND completed_at IS NOT NULL)
FROM {SCHEMA}.enrollments GROUP BY course_id
""",
    f"""
INSERT INTO {SCHEMA}.course_lesson_counts (course_id, lesson_id, completed, completed_in_completed)
SELECT e.course_id, p.lesson_id, count(*), count(*) FILTER (WHERE e.completed_at IS NOT NULL)
FROM {SCHEMA}.lesson_progress AS p JOIN {SCHEMA}.enrollments AS e ON e.id = p.enrollment_id
WHERE p.completed AND e.withdrawn_at IS NULL GROUP BY e.course_id, p.lesson_id
""",
)


def downgrade() -> None:
    op.drop_table("course_lesson_counts", schema=SCHEMA)
    op.drop_table("course_counts", schema=SCHEMA)
    op.drop_index("ix_enrollments_course_active_name", "enrollments", schema=SCHEMA)
    op.drop_index("ix_enrollments_course_active_enrolled", "enrollments", schema=SCHEMA)
    op.drop_column("enrollments", "withdrawn_at", schema=SCHEMA)
