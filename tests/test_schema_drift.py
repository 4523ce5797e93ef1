"""Each service's SQLAlchemy tables against what its migrations actually build.

The tables are written twice, once in store.py (what the queries use) and once in the
migration (what the database holds); Alembic's autogenerate comparison between the metadata
and a freshly migrated database shows any difference, so the two copies cannot drift apart.
"""

from __future__ import annotations

import importlib
import uuid
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, pool, text

from libs.embedded import drop_database, ensure_database
from libs.migrations import VERSION_TABLE
from libs.settings import to_sqlalchemy_url
from tests.conftest import MIGRATED_ONLY, SERVICES


def _only_own_schema(schema: str):
    def include_object(
        obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        if type_ == "table":
            return obj.schema == schema and name != VERSION_TABLE
        return True

    return include_object


@pytest.mark.parametrize("service", [*SERVICES, *MIGRATED_ONLY])
def test_migrations_build_exactly_the_tables_the_store_declares(
    database_url: str, service: str
) -> None:
    package = importlib.import_module(f"services.{service}")
    metadata: MetaData = importlib.import_module(f"services.{service}.store").metadata
    engine = create_engine(to_sqlalchemy_url(database_url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "include_schemas": True,
                    "include_name": lambda name, type_, parent: (
                        type_ != "schema" or name == package.SCHEMA
                    ),
                    "include_object": _only_own_schema(package.SCHEMA),
                    "compare_type": True,
                    "compare_server_default": True,
                },
            )
            differences = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert differences == [], "\n".join(map(str, differences))


# Autogenerate compares tables, columns, types, defaults, indexes, unique and foreign keys, but
# not CHECK constraints, partial-index predicates or the names the naming convention gives. So
# the store's tables are also built as they are declared (create_all, in a scratch database) and
# PostgreSQL's own rendering of every constraint and index is compared with the migrated one.
DEFINITIONS = """
SELECT 'constraint' AS kind, c.relname AS table_name, k.conname AS name,
       pg_get_constraintdef(k.oid) AS definition
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname <> %(version_table)s
UNION ALL
SELECT 'index', tablename, indexname, indexdef
FROM pg_indexes
WHERE schemaname = %(schema)s AND tablename <> %(version_table)s
UNION ALL
SELECT 'sequence', '', sequencename, data_type::text
FROM pg_sequences
WHERE schemaname = %(schema)s
"""


def definitions(url: str, schema: str) -> set[tuple[str, str, str, str]]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            DEFINITIONS, {"schema": schema, "version_table": VERSION_TABLE}
        ).fetchall()
    return {tuple(row) for row in rows}


@pytest.mark.parametrize("service", [*SERVICES, *MIGRATED_ONLY])
def test_constraints_and_indexes_are_the_declared_ones(
    admin_database_url: str, database_url: str, service: str
) -> None:
    schema = importlib.import_module(f"services.{service}").SCHEMA
    metadata: MetaData = importlib.import_module(f"services.{service}.store").metadata
    name = f"cp_drift_{uuid.uuid4().hex[:12]}"
    scratch = ensure_database(admin_database_url, name)
    try:
        engine = create_engine(to_sqlalchemy_url(scratch), poolclass=pool.NullPool)
        try:
            with engine.begin() as connection:
                connection.execute(text(f'CREATE SCHEMA "{schema}"'))
                metadata.create_all(connection)
        finally:
            engine.dispose()
        declared = definitions(scratch, schema)
    finally:
        drop_database(admin_database_url, name)
    migrated = definitions(database_url, schema)
    assert declared, service
    assert migrated == declared, (
        "only migrated: " + repr(sorted(migrated - declared)),
        "only declared: " + repr(sorted(declared - migrated)),
    )
