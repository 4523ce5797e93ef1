"""courses.search_document (a generated tsvector) and its GIN index, for ?search=

The document is the title (weight A) and the short description (weight B) under the `english`
text search configuration, so searches are stemmed ("cook" finds "Cooking basics") and titles
rank above descriptions. PostgreSQL computes it on every write; adding the column fills it for
existing rows.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TSVECTOR

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEMA = "catalog"
DOCUMENT = (
    "setweight(to_tsvector('english'::regconfig, (title)::text), 'A'::\"char\")"
    " || setweight(to_tsvector('english'::regconfig, (short_description)::text), 'B'::\"char\")"
)


def upgrade() -> None:
    op.add_column(
        "courses",
        sa.Column("search_document", TSVECTOR, sa.Computed(DOCUMENT, persisted=True)),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_courses_search_document",
        "courses",
        ["search_document"],
        schema=SCHEMA,
        postgresql_using="gin",
        # Course writes are rare: no pending list for searches (and plans) to pay for.
        postgresql_with={"fastupdate": "off"},
    )


def downgrade() -> None:
    op.drop_index("ix_courses_search_document", "courses", schema=SCHEMA)
    op.drop_column("courses", "search_document", schema=SCHEMA)
