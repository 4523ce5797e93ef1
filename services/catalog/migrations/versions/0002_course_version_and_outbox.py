"""courses.version and the outbox of CourseChanged events

Existing courses start at version 1 (the server default fills them in); the outbox is the shared
one (libs/outbox.py).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from libs.migrations import create_outbox_table

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = "catalog"


def upgrade() -> None:
    op.add_column(
        "courses",
        sa.Column("version", sa.BigInteger, nullable=False, server_default="1"),
        schema=SCHEMA,
    )
    create_outbox_table(SCHEMA)


def downgrade() -> None:
    op.drop_table("outbox", schema=SCHEMA)
    op.drop_column("courses", "version", schema=SCHEMA)
