"""password_resets (single-use codes, stored as hashes) and the outbox of PasswordResetRequested

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from libs.migrations import create_outbox_table

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEMA = "identity"


def upgrade() -> None:
    op.create_table(
        "password_resets",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_password_resets"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            [f"{SCHEMA}.users.id"],
            ondelete="CASCADE",
            name="fk_password_resets_user_id_users",
        ),
        sa.UniqueConstraint("code_hash", name="uq_password_resets_code_hash"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_password_resets_user_id_created_at",
        "password_resets",
        ["user_id", "created_at"],
        schema=SCHEMA,
    )
    create_outbox_table(SCHEMA)


def downgrade() -> None:
    op.drop_table("outbox", schema=SCHEMA)
    op.drop_table("password_resets", schema=SCHEMA)
