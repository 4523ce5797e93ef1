from libs.migrations import run_env
from services.notifier import SCHEMA
from services.notifier.store import metadata

run_env(SCHEMA, metadata)
