"""courses, lessons and the course code sequence

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "catalog"


def upgrade() -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence("course_code_seq", schema=SCHEMA)))
    op.create_table(
        "courses",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("title", sa.String(255), nullable=False),
        sa.Column("short_description", sa.String(500), nullable=False),
        sa.Column("instructor_id", sa.BigInteger, nullable=False),
        sa.Column("instructor_name", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="draft"),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_courses"),
        sa.UniqueConstraint("code", name="uq_courses_code"),
        sa.CheckConstraint("status IN ('draft', 'published')", name="status"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_courses_instructor_live",
        "courses",
        ["instructor_id", "id"],
        schema=SCHEMA,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(
        "ix_courses_published_live",
        "courses",
        ["id"],
        schema=SCHEMA,
        postgresql_where=sa.text("status = 'published' AND deleted_at IS NULL"),
    )
    op.create_table(
        "lessons",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("course_id", sa.BigInteger, nullable=False),
        sa.Column("title", sa.String(255), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_lessons"),
        sa.ForeignKeyConstraint(
            ["course_id"], [f"{SCHEMA}.courses.id"], name="fk_lessons_course_id_courses"
        ),
        sa.CheckConstraint("position >= 1", name="position_positive"),
        schema=SCHEMA,
    )
    # Unique among live lessons only: deleting a lesson frees its order.
    op.create_index(
        "uq_lessons_course_live_position",
        "lessons",
        ["course_id", "position"],
        unique=True,
        schema=SCHEMA,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("lessons", schema=SCHEMA)
    op.drop_table("courses", schema=SCHEMA)
    op.execute(sa.schema.DropSequence(sa.Sequence("course_code_seq", schema=SCHEMA)))
