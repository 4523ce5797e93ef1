"""enrollments, lesson progress and the outbox

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "learning"


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "enrollments",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("student_id", sa.BigInteger, nullable=False),
        sa.Column("student_name", sa.String(255), nullable=False),
        sa.Column("course_id", sa.BigInteger, nullable=False),
        sa.Column("course_title", sa.String(255), nullable=False),
        sa.Column(
            "enrolled_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_enrollments"),
        sa.UniqueConstraint("student_id", "course_id", name="uq_enrollments_student_id_course_id"),
        schema=SCHEMA,
    )
    op.create_index("ix_enrollments_course_id", "enrollments", ["course_id"], schema=SCHEMA)

    op.create_table(
        "lesson_progress",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("enrollment_id", sa.BigInteger, nullable=False),
        sa.Column("lesson_id", sa.BigInteger, nullable=False),
        sa.Column("lesson_title", sa.String(255), nullable=False),
        sa.Column("lesson_order", sa.Integer, nullable=False),
        sa.Column("completed", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column("removed_at", sa.DateTime(timezone=True)),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_lesson_progress"),
        sa.ForeignKeyConstraint(
            ["enrollment_id"],
            [f"{SCHEMA}.enrollments.id"],
            name="fk_lesson_progress_enrollment_id_enrollments",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "enrollment_id", "lesson_id", name="uq_lesson_progress_enrollment_id_lesson_id"
        ),
        sa.CheckConstraint(
            "completed = (completed_at IS NOT NULL)", name="ck_lesson_progress_completed_at"
        ),
        schema=SCHEMA,
    )

    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("event_id", UUID(as_uuid=True), nullable=False),
        sa.Column("dedup_key", sa.String(200), nullable=False),
        sa.Column("stream", sa.String(200), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("event_id", name="uq_outbox_event_id"),
        sa.UniqueConstraint("dedup_key", name="uq_outbox_dedup_key"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["id"],
        schema=SCHEMA,
        postgresql_where=sa.text("published_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("outbox", schema=SCHEMA)
    op.drop_table("lesson_progress", schema=SCHEMA)
    op.drop_table("enrollments", schema=SCHEMA)
