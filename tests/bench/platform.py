"""The platform under test: `make run`'s processes (libs.devstack) on a fresh database.

PostgreSQL: the DATABASE_URL server, else 127.0.0.1:5432 if it answers, else the embedded one;
in each case a new database `cp_bench_<random>` that is dropped afterwards. Redis: REDIS_URL, else
a private embedded Redis, so the bench's completion events never reach a developer's notifier.
Every port is a free one, so a `make run` already up on the default ports is left alone.
One run may start the platform several times on the same database and Redis, once per log
level (BENCH_LOG_LEVELS), one after another; each writes its JSON logs to a file.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from libs import devstack
from libs.embedded import (
    EmbeddedRedis,
    drop_database,
    ensure_database,
    free_port,
    postgres_answers,
)
from libs.settings import Settings, to_libpq_url
from tests.bench.config import BenchError, log

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
READY_TIMEOUT_S = 60.0
# Settings that differ from `make run`: nothing that changes how a request is served. (Plus
# SQL_STATEMENT_COUNTING unless BENCH_SQL=0: a listener call per statement, within noise.)
# LOG_LEVEL is the run's (BENCH_LOG_LEVELS): each level gets a platform of its own.
BENCH_ENV = {
    "JWT_ACCESS_TTL_S": "3600",  # a full run with the sweep outlives the default 15 minutes
}


def observability_env() -> dict[str, str]:
    """The metrics and tracing modes under test (docs/benchmarks.md "Cost of observability"):
    BENCH_METRICS=off turns metrics off (on by default, as deployed); BENCH_TRACING=noop makes
    every span and exports it to a no-op exporter (off by default, as deployed without a
    collector). Nothing is ever exported from a bench run."""
    metrics_on = os.environ.get("BENCH_METRICS", "on").strip().lower() not in ("off", "false", "0")
    tracing_on = os.environ.get("BENCH_TRACING", "off").strip().lower() in ("noop", "on", "true")
    log(
        f"bench observability: metrics {'on' if metrics_on else 'off'}, "
        f"tracing {'on (no-op exporter)' if tracing_on else 'off'}"
    )
    return {
        "METRICS_ENABLED": "true" if metrics_on else "false",
        "TRACING_ENABLED": "true" if tracing_on else "false",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "",
    }


@dataclass(frozen=True)
class Platform:
    base_url: str
    # gRPC targets by service name ("identity" -> "127.0.0.1:port").
    targets: dict[str, str]
    # libpq URL of the database the services use (None when the platform is not ours).
    database_url: str | None
    # The LOG_LEVEL its processes run at (None: not ours, unknown) and where their logs go.
    log_level: str | None = None
    log_path: Path | None = None
    # Process ids by name (ours only), for the CPU table.
    pids: dict[str, int] = field(default_factory=dict)
    # The database's name (ours only): its backends count as `postgres` in the CPU table.
    database: str | None = None


def targets_from_settings(settings: Settings) -> dict[str, str]:
    return {
        name.removesuffix("_target"): str(value)
        for name, value in settings.model_dump().items()
        if name.endswith("_target")
    }


def external_platform(base_url: str) -> Platform:
    """An already running platform; its services are found where Settings() says (the
    IDENTITY_TARGET, CATALOG_TARGET, ... variables, `make run`'s ports by default)."""
    return Platform(base_url=base_url, targets=targets_from_settings(Settings()), database_url=None)


def _port_env() -> dict[str, str]:
    """A free port for every `<x>_port` setting (the SMTP port is not ours to listen on), and
    the matching `<x>_target` for clients."""
    env: dict[str, str] = {}
    for name in Settings.model_fields:
        # METRICS_PORT overrides every process's own metrics port: never set here.
        if not name.endswith("_port") or name.startswith("smtp") or name == "metrics_port":
            continue
        port = free_port()
        env[name.upper()] = str(port)
        target = name.removesuffix("_port") + "_target"
        if target in Settings.model_fields:
            env[target.upper()] = f"127.0.0.1:{port}"
    return env


def _wait_ready(base_url: str, children: devstack.Children) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        for name, child in children:
            if child.poll() is not None:
                raise BenchError(f"{name} exited with {child.returncode} during start-up")
        try:
            response = httpx.get(f"{base_url}/readyz/", timeout=2.0)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text}"
        except httpx.HTTPError as error:
            last = repr(error)
        time.sleep(0.25)
    raise BenchError(f"the platform was not ready within {READY_TIMEOUT_S:.0f} s: {last}")


@dataclass(frozen=True)
class Servers:
    """What every platform of one bench run shares: PostgreSQL (one fresh database), Redis."""

    env: dict[str, str]
    admin_url: str
    database_url: str
    database: str
    scratch: Path


@contextmanager
def bench_servers(keep_database: bool = False) -> Iterator[Servers]:
    """A fresh, migrated database and a Redis, for one or more platforms in turn."""
    stack = devstack.Stack()
    if "DATABASE_URL" not in stack.env and postgres_answers(LOCAL_POSTGRES):
        stack.env["DATABASE_URL"] = LOCAL_POSTGRES
    redis: EmbeddedRedis | None = None
    scratch = Path(tempfile.mkdtemp(prefix="cp-bench-"))
    if "REDIS_URL" not in stack.env:
        redis = EmbeddedRedis(scratch / "redis")
        stack.env["REDIS_URL"] = redis.url()
    admin_url: str | None = None
    name = f"cp_bench_{uuid.uuid4().hex[:10]}"
    try:
        stack.provide_servers(need_redis=False)  # embedded PostgreSQL when there is no other
        admin_url = to_libpq_url(stack.env["DATABASE_URL"])
        database_url = ensure_database(admin_url, name)
        stack.env["DATABASE_URL"] = database_url
        log(f"bench database {name} on {admin_url.rsplit('@', 1)[-1]}")
        with contextlib.redirect_stdout(sys.stderr):  # stdout is the report's
            stack.migrate()
        yield Servers(dict(stack.env), admin_url, database_url, name, scratch)
    finally:
        if admin_url is not None:
            if keep_database:
                log(f"kept the bench database {name}")
            else:
                drop_database(admin_url, name)
        stack.stop_servers()
        if redis is not None:
            redis.stop()


def _start(env: dict[str, str], log_file: IO[bytes]) -> devstack.Children:
    """devstack's processes, in its order, with their logs (stderr) going to `log_file`, as a
    container runtime would collect them, rather than to the bench's terminal."""
    children: devstack.Children = []
    for name, module in devstack.PROCESSES:
        command = [sys.executable, "-m", module]
        children.append((name, subprocess.Popen(command, env=env, stderr=log_file)))
        time.sleep(0.3)
    return children


@contextmanager
def own_platform(
    servers: Servers, log_level: str = "WARNING", count_sql: bool = True
) -> Iterator[Platform]:
    """`make run`'s processes on the shared servers at `log_level`, on free ports."""
    env = dict(servers.env)
    ports = _port_env()
    env.update(ports)
    env.update(BENCH_ENV)
    env.update(observability_env())
    env["LOG_LEVEL"] = log_level
    env["LOG_JSON"] = "true"  # what a log collector gets
    env["SQL_STATEMENT_COUNTING"] = "true" if count_sql else "false"
    env["MAIL_DIR"] = str(servers.scratch / "mail")
    log_path = servers.scratch / f"platform-{log_level.lower()}-{uuid.uuid4().hex[:6]}.log"
    children: devstack.Children = []
    with log_path.open("wb") as log_file:
        try:
            log(f"starting the platform at LOG_LEVEL={log_level} (logs: {log_path})")
            children = _start(env, log_file)
            base_url = f"http://127.0.0.1:{ports['GATEWAY_PORT']}"
            _wait_ready(base_url, children)
            settings = Settings(**{key.lower(): value for key, value in ports.items()})
            yield Platform(
                base_url=base_url,
                targets=targets_from_settings(settings),
                database_url=servers.database_url,
                log_level=log_level,
                log_path=log_path,
                pids={name: child.pid for name, child in children},
                database=servers.database,
            )
        finally:
            devstack.stop_processes(children)
