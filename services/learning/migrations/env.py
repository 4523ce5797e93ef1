from libs.migrations import run_env
from services.learning import SCHEMA
from services.learning.store import metadata

run_env(SCHEMA, metadata)
