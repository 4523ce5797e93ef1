"""Each service's SQLAlchemy tables against what its migrations actually build.

The tables are written twice, once in store.py (what the queries use) and once in the
migration (what the database holds); Alembic's autogenerate comparison between the metadata
and a freshly migrated database shows any difference, so the two copies cannot drift apart.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, pool

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
