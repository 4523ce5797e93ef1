"""outbox.traceparent: the W3C trace context of the transaction that wrote the event

The relay continues that trace when it publishes, so the consumers' spans join the request's
trace (libs/tracing.py). Nullable: older rows, and rows written with tracing off, have none.

Revision ID: 0005
Revises: 0004
"""

from libs.migrations import add_outbox_traceparent, drop_outbox_traceparent

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SCHEMA = "identity"


def upgrade() -> None:
    add_outbox_traceparent(SCHEMA)


def downgrade() -> None:
    drop_outbox_traceparent(SCHEMA)
