"""course_lessons: learning's own copy of each course's lesson list (ids, orders, titles)

Filled from the catalog when missing or stale, marked stale by catalog's CourseChanged events
(docs/learning.md "The copy of each course's lessons").

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEMA = "learning"


def upgrade() -> None:
    op.create_table(
        "course_lessons",
        sa.Column("course_id", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("latest_version", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("course_title", sa.String(255)),
        sa.Column("lessons", JSONB),
        sa.Column("gone", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("checked_at", sa.DateTime(timezone=True)),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("course_id", name="pk_course_lessons"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("course_lessons", schema=SCHEMA)
