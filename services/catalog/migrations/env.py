from libs.migrations import run_env
from services.catalog import SCHEMA
from services.catalog.store import metadata

run_env(SCHEMA, metadata)
