"""`make run` and `make migrate`: the whole platform on one machine.

With DATABASE_URL / REDIS_URL unset it starts an embedded PostgreSQL and Redis with data under
.data/; with them set it uses those servers. It then applies every service's migrations, makes
sure a signing key exists, starts each service and the gateway as child processes, prints the
URLs, and on Ctrl-C (or SIGTERM) stops every child gracefully.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from libs import migrations
from libs.embedded import EmbeddedPostgres, EmbeddedRedis, ensure_database
from libs.settings import Settings, to_libpq_url
from libs.signing_keys import ensure_signing_key

DATA_DIR = Path(".data")
DEV_DATABASE = "courseplatform"
DEV_REDIS_PORT = 6380
STOP_TIMEOUT_S = 15.0

# Services with a schema, in the order their migrations run.
MIGRATED_SERVICES: tuple[str, ...] = ("identity", "catalog", "learning", "notifier")
# Child processes, in start order (a service before those that call it).
PROCESSES: tuple[tuple[str, str], ...] = (
    ("identity", "services.identity"),
    ("catalog", "services.catalog"),
    ("learning", "services.learning"),
    ("notifier", "services.notifier"),
    ("gateway", "gateway"),
)


class Stack:
    def __init__(self) -> None:
        self.postgres: EmbeddedPostgres | None = None
        self.redis: EmbeddedRedis | None = None
        self.env: dict[str, str] = dict(os.environ)

    def provide_servers(self, need_redis: bool) -> None:
        if "DATABASE_URL" not in self.env:
            print(
                "DATABASE_URL not set: starting embedded PostgreSQL in .data/postgres", flush=True
            )
            self.postgres = EmbeddedPostgres(DATA_DIR / "postgres")
            self.env["DATABASE_URL"] = ensure_database(self.postgres.url(), DEV_DATABASE)
        if need_redis and "REDIS_URL" not in self.env:
            print(f"REDIS_URL not set: starting embedded Redis on :{DEV_REDIS_PORT}", flush=True)
            self.redis = EmbeddedRedis(DATA_DIR / "redis", port=DEV_REDIS_PORT)
            self.env["REDIS_URL"] = self.redis.url()
        self.env.setdefault("MAIL_DIR", str(DATA_DIR / "mail"))

    def migrate(self) -> None:
        url = self.env["DATABASE_URL"]
        for service in MIGRATED_SERVICES:
            migrations.upgrade(url, service)
            print(f"migrated {service}", flush=True)

    def stop_servers(self) -> None:
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()


def run(stack: Stack) -> int:
    settings = Settings()  # ports and key dir as the children will see them
    ensure_signing_key(settings.jwt_keys_dir)
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    stopping = False

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    children.extend(start_processes(stack.env))
    print(
        "\ncourseplatform is up:\n"
        f"  REST API       http://localhost:{settings.gateway_port}/api/\n"
        f"  Swagger UI     http://localhost:{settings.gateway_port}/api/docs/\n"
        f"  ReDoc          http://localhost:{settings.gateway_port}/redoc/\n"
        f"  identity gRPC  localhost:{settings.identity_port}\n"
        f"  catalog gRPC   localhost:{settings.catalog_port}\n"
        f"  learning gRPC  localhost:{settings.learning_port}\n"
        f"  notifier       http://localhost:{settings.notifier_health_port}/health\n"
        f"  mails          {_mail_destination(stack.env)}\n"
        f"  database       {to_libpq_url(stack.env['DATABASE_URL'])}\n"
        "Press Ctrl-C to stop.\n",
        flush=True,
    )
    exit_code = 0
    while not stopping:
        for name, child in children:
            if child.poll() is not None:
                print(f"{name} exited with {child.returncode}; stopping the stack", flush=True)
                exit_code = 1
                stopping = True
        time.sleep(0.2)

    stop_processes(children)
    return exit_code


Children = list[tuple[str, subprocess.Popen[bytes]]]


def _mail_destination(env: dict[str, str]) -> str:
    if env.get("SMTP_HOST"):
        return f"smtp://{env['SMTP_HOST']}:{env.get('SMTP_PORT', '25')}"
    return f"{env['MAIL_DIR']}/*.eml"


def start_processes(env: dict[str, str]) -> Children:
    """Every process of PROCESSES, in order, with `env` (also used by the benchmark)."""
    children: Children = []
    for name, module in PROCESSES:
        children.append((name, subprocess.Popen([sys.executable, "-m", module], env=env)))
        time.sleep(0.3)
    return children


def stop_processes(children: Children) -> None:
    """SIGTERM in reverse start order; whatever has not exited by the deadline is killed."""
    for _, child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for name, child in reversed(children):
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{name} did not stop in time; killing it", flush=True)
            child.kill()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m libs.devstack")
    parser.add_argument("command", choices=["run", "migrate"])
    args = parser.parse_args()
    stack = Stack()
    stack.provide_servers(need_redis=args.command == "run")
    try:
        stack.migrate()
        code = run(stack) if args.command == "run" else 0
    finally:
        stack.stop_servers()
    sys.exit(code)


if __name__ == "__main__":
    main()
