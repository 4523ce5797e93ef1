"""Alembic, driven from code: one history per service, its version table inside its schema.

`run_env(schema, metadata)` is the whole body of each service's migrations/env.py;
`upgrade(database_url, service)` applies one service's history (used by `make migrate`,
the dev launcher and the tests); `python -m libs.migrations SERVICE...` applies some to
DATABASE_URL (the Kubernetes init containers).
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import MetaData, create_engine, pool, text
from sqlalchemy.dialects.postgresql import UUID

from libs.settings import to_sqlalchemy_url

VERSION_TABLE = "alembic_version"


def _config(database_url: str, service: str) -> Config:
    package = importlib.import_module(f"services.{service}")
    assert package.__file__ is not None
    config = Config()
    config.set_main_option("script_location", str(Path(package.__file__).parent / "migrations"))
    config.set_main_option("sqlalchemy.url", to_sqlalchemy_url(database_url))
    return config


def upgrade(database_url: str, service: str, revision: str = "head") -> None:
    command.upgrade(_config(database_url, service), revision)


def rename_constraint(schema: str, table: str, old: str, new: str) -> None:
    """Inside a migration: rename a constraint (Alembic has no operation for it)."""
    op.execute(f'ALTER TABLE "{schema}"."{table}" RENAME CONSTRAINT "{old}" TO "{new}"')


def create_outbox_table(schema: str) -> None:
    """Inside a migration: the shared outbox (libs/outbox.py) as its first version declares it.

    Written out here, not derived from libs/outbox.py, so a past migration never changes under
    a later edit of the table (that edit comes with a migration of its own in every service);
    tests/test_schema_drift.py holds the two in step.
    """
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
        schema=schema,
    )
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["id"],
        schema=schema,
        postgresql_where=sa.text("published_at IS NULL"),
    )


def add_outbox_traceparent(schema: str) -> None:
    """Inside a migration: the outbox's `traceparent` column (libs/tracing.py), nullable, so rows
    written before it, or with tracing off, have none."""
    op.add_column("outbox", sa.Column("traceparent", sa.String(55)), schema=schema)


def drop_outbox_traceparent(schema: str) -> None:
    op.drop_column("outbox", "traceparent", schema=schema)


def run_env(schema: str, metadata: MetaData) -> None:
    """Online migrations for one schema (we never generate offline SQL scripts)."""
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        # Two replicas starting at once must not both run the same migration.
        connection.execute(text("SELECT pg_advisory_lock(hashtext(:schema))"), {"schema": schema})
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        connection.commit()
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table_schema=schema,
            version_table=VERSION_TABLE,
            include_schemas=False,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


def main(argv: list[str] | None = None) -> None:
    """`python -m libs.migrations SERVICE...`: apply those services' migrations to DATABASE_URL.

    What each Kubernetes pod's init container runs, before the service starts; unlike
    `make migrate` it never starts an embedded server.
    """
    import argparse

    from libs.settings import Settings

    parser = argparse.ArgumentParser(prog="python -m libs.migrations")
    parser.add_argument("services", nargs="+", metavar="SERVICE")
    args = parser.parse_args(argv)
    for service in args.services:
        spec = importlib.util.find_spec(f"services.{service}") if service.isidentifier() else None
        origin = Path(spec.origin) if spec and spec.origin else None
        if origin is None or not (origin.parent / "migrations").is_dir():
            parser.exit(2, f"error: {service!r} is not a service with migrations\n")
    database_url = Settings().database_url
    for service in args.services:
        upgrade(database_url, service)
        print(f"migrated {service}", flush=True)


if __name__ == "__main__":
    main()
