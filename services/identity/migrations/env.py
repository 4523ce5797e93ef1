from libs.migrations import run_env
from services.identity import SCHEMA
from services.identity.store import metadata

run_env(SCHEMA, metadata)
