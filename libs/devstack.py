"""`make run` and `make migrate`: the whole platform on one machine.

`run` first locks .data/ (libs/data_lock.py): a second run on the same directory refuses at
once and touches nothing. With DATABASE_URL / REDIS_URL unset it starts an embedded PostgreSQL and
Redis with data under .data/; with them set it uses those servers. It then applies every
service's migrations, makes sure a signing key exists, starts each service and the gateway as
child processes, prints the URLs once the gateway's /readyz/ answers 200, and on Ctrl-C (or
SIGTERM) stops every child gracefully, then the embedded servers, and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from libs import metrics, migrations
from libs.data_lock import DataDirInUse, DataDirLock
from libs.embedded import EmbeddedPostgres, EmbeddedRedis, ensure_database
from libs.settings import Settings, to_libpq_url
from libs.signing_keys import ensure_signing_key

DATA_DIR = Path(".data")
DEV_DATABASE = "courseplatform"
STOP_TIMEOUT_S = 15.0
READY_POLL_S = 0.2

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

    def provide_servers(self, need_redis: bool, redis_port: int = 6380) -> None:
        if "DATABASE_URL" not in self.env:
            print(
                "DATABASE_URL not set: starting embedded PostgreSQL in .data/postgres", flush=True
            )
            self.postgres = EmbeddedPostgres(DATA_DIR / "postgres")
            self.env["DATABASE_URL"] = ensure_database(self.postgres.url(), DEV_DATABASE)
        if need_redis and "REDIS_URL" not in self.env:
            print(f"REDIS_URL not set: starting embedded Redis on :{redis_port}", flush=True)
            self.redis = EmbeddedRedis(DATA_DIR / "redis", port=redis_port)
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


def run(
    stack: Stack, settings: Settings, started: float, keep_fds: tuple[int, ...] = ()
) -> tuple[int, float]:
    """Start every process, announce the stack once the gateway is ready, serve until a signal
    (or a child's exit), then stop the children. `started`: time.monotonic() at the command's
    start, for the "ready in N s" line. Returns the exit code and when stopping began."""
    ensure_signing_key(settings.jwt_keys_dir)
    stopping = False

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    children = start_processes(stack.env, keep_fds)
    exit_code = 0
    failure = wait_until_ready(
        readyz_url(settings), children, lambda: stopping, settings.devstack_ready_notice_s
    )
    if failure is None:
        print(_banner(settings, stack.env, time.monotonic() - started), flush=True)
    elif not stopping:
        print(f"{failure}; stopping the stack", flush=True)
        exit_code = 1
        stopping = True
    while not stopping:
        if (exited := _exited(children)) is not None:
            print(f"{exited}; stopping the stack", flush=True)
            exit_code = 1
            stopping = True
        time.sleep(0.2)

    stop_began = time.monotonic()
    print("stopping courseplatform...", flush=True)
    stop_processes(children)
    return exit_code, stop_began


def readyz_url(settings: Settings) -> str:
    host = settings.gateway_host
    if host in ("0.0.0.0", "::", ""):  # listening everywhere: ask over loopback
        host = "127.0.0.1"
    return f"http://{host}:{settings.gateway_port}/readyz/"


def probe_ready(url: str) -> tuple[bool, str]:
    """(ready, what the gateway answered): ready only on a 200 from /readyz/."""
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return response.status == 200, f"{response.status}"
    except urllib.error.HTTPError as error:  # 503 while a backend is NOT_SERVING
        return False, f"{error.code}, {_waiting_for(error.read(2000))}"
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return False, f"no answer yet ({getattr(reason, 'strerror', None) or reason})"


def _waiting_for(body: bytes) -> str:
    """The backends /readyz/ does not see SERVING, from its body (the raw text if it has none)."""
    try:
        backends = json.loads(body)["backends"]
        waiting = {name: status for name, status in backends.items() if status != "SERVING"}
    except (ValueError, KeyError, TypeError, AttributeError):
        return body.decode(errors="replace")[:200]
    return "not serving yet: " + ", ".join(f"{name} {status}" for name, status in waiting.items())


def wait_until_ready(
    url: str, children: Children, stop_requested: Callable[[], bool], notice_every_s: float
) -> str | None:
    """Poll `url` until it answers 200 (None), a child exits or a stop is requested (the reason).
    While waiting, says every `notice_every_s` what the gateway last answered."""
    next_notice = time.monotonic() + notice_every_s
    while not stop_requested():
        if (exited := _exited(children)) is not None:
            return f"{exited} during start-up"
        ready, answer = probe_ready(url)
        if ready:
            return None
        if time.monotonic() >= next_notice:
            print(f"still waiting for {url}: {answer}", flush=True)
            next_notice = time.monotonic() + notice_every_s
        time.sleep(READY_POLL_S)
    return "stopped before the platform was ready"


def _exited(children: Children) -> str | None:
    for name, child in children:
        if child.poll() is not None:
            return f"{name} exited with {child.returncode}"
    return None


def _banner(settings: Settings, env: dict[str, str], took_s: float) -> str:
    return (
        f"\ncourseplatform is up (ready in {took_s:.1f} s):\n"
        f"  REST API       http://localhost:{settings.gateway_port}/api/\n"
        f"  Swagger UI     http://localhost:{settings.gateway_port}/api/docs/\n"
        f"  ReDoc          http://localhost:{settings.gateway_port}/redoc/\n"
        f"  identity gRPC  localhost:{settings.identity_port}\n"
        f"  catalog gRPC   localhost:{settings.catalog_port}\n"
        f"  learning gRPC  localhost:{settings.learning_port}\n"
        f"  notifier       http://localhost:{settings.notifier_health_port}/health\n"
        f"  metrics        {_metrics_urls(settings)}\n"
        f"  mails          {_mail_destination(env)}\n"
        f"  database       {to_libpq_url(env['DATABASE_URL'])}\n"
        "Press Ctrl-C to stop.\n"
    )


Children = list[tuple[str, subprocess.Popen[bytes]]]


def _metrics_urls(settings: Settings) -> str:
    """Where each process serves /metrics (README "Observing it")."""
    if not settings.metrics_enabled:
        return "off (METRICS_ENABLED=false)"
    gateway = settings.metrics_port or settings.gateway_metrics_port or settings.gateway_port
    urls = [f"gateway   http://localhost:{gateway}/metrics"]
    for service in ("identity", "catalog", "learning"):
        port = metrics.port_for(settings, service)
        urls.append(f"{service:<9} http://localhost:{port}/metrics")
    urls.append(f"notifier  http://localhost:{settings.notifier_health_port}/metrics")
    return "\n                 ".join(urls)


def _mail_destination(env: dict[str, str]) -> str:
    if env.get("SMTP_HOST"):
        return f"smtp://{env['SMTP_HOST']}:{env.get('SMTP_PORT', '25')}"
    return f"{env['MAIL_DIR']}/*.eml"


def start_processes(env: dict[str, str], keep_fds: tuple[int, ...] = ()) -> Children:
    """Every process of PROCESSES, in order, with `env` (also used by the benchmark); each
    inherits `keep_fds` (the .data lock, so it stays held while any child lives)."""
    children: Children = []
    for name, module in PROCESSES:
        command = [sys.executable, "-m", module]
        children.append((name, subprocess.Popen(command, env=env, pass_fds=keep_fds)))
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
    started = time.monotonic()
    # `run` only: `migrate` also runs in the compose image, whose /app is not writable; it
    # starts no Redis, and pgserver stops a shared embedded PostgreSQL only when its last user
    # exits, so a migrate next to a run leaves the run's servers alone.
    lock = DataDirLock(DATA_DIR)
    if args.command == "run":
        try:
            lock.acquire()  # before anything is started, so a refused run touches nothing
        except DataDirInUse as refused:
            print(refused, file=sys.stderr, flush=True)
            sys.exit(1)
    settings = Settings()  # ports and key dir as the children will see them
    stack = Stack()
    code, stop_began = 1, time.monotonic()
    try:
        stack.provide_servers(args.command == "run", settings.embedded_redis_port)
        stack.migrate()
        if args.command == "run":
            code, stop_began = run(stack, settings, started, (lock.fd,))
        else:
            code = 0
    finally:
        stack.stop_servers()
        lock.release()
    if args.command == "run":
        took = time.monotonic() - stop_began
        print(f"courseplatform stopped in {took:.1f} s (exit code {code})", flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
