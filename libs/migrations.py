"""Alembic, driven from code: one history per service, its version table inside its schema.

`run_env(schema, metadata)` is the whole body of each service's migrations/env.py;
`upgrade(database_url, service)` applies one service's history (used by `make migrate`,
the dev launcher and the tests).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, create_engine, pool, text

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
