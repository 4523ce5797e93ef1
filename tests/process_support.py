"""Test helpers for running the platform's processes for real: `python -m services.<name>` and
`python -m gateway` as subprocesses on free loopback ports, with their stderr (JSON log lines)
kept in a file per process, readiness polled, and SIGTERM/SIGKILL sent on demand."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from libs.embedded import free_port
from libs.healthcheck import check as grpc_serving
from libs.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
# Environment variables of the machine that must not leak into a test's processes.
_OWN_PREFIXES = (
    "DATABASE_",
    "REDIS_",
    "SMTP_",
    "MAIL_",
    "JWT_",
    "GRPC_",
    "GATEWAY_",
    "NOTIFIER_",
    "IDENTITY_",
    "CATALOG_",
    "LEARNING_",
    "OUTBOX_",
    "LOG_",
    "METRICS_",
    "PROMETHEUS_",
    "OTEL_",
)


def process_env(settings: Settings, **values: str | int | float) -> dict[str, str]:
    """The environment of a platform process: the suite's database, Redis and keys, JSON logs at
    INFO (the per-call `rpc` lines), plus `values` (upper-cased setting names)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(_OWN_PREFIXES)}
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        JWT_KEYS_DIR=str(settings.jwt_keys_dir),
        GRPC_BIND_HOST="127.0.0.1",
        GATEWAY_HOST="127.0.0.1",
        NOTIFIER_HEALTH_HOST="127.0.0.1",
        LOG_LEVEL="INFO",
        LOG_JSON="true",
        # No Python-side buffering: a SIGKILLed process's last lines are still in its log.
        PYTHONUNBUFFERED="1",
        # A dozen such processes share one PostgreSQL (max_connections 100 by default) with the
        # suite's own services: small pools keep the test from running out of connections.
        DB_POOL_SIZE="3",
        DB_MAX_OVERFLOW="3",
    )
    env.update({key.upper(): str(value) for key, value in values.items()})
    return env


@dataclass
class PlatformProcess:
    """One `python -m <module>` child; `kind` says how readiness is checked."""

    name: str
    module: str
    env: dict[str, str]
    log_path: Path
    kind: str  # "grpc" (health SERVING), "http" (GET ready_path 200)
    port: int = field(default_factory=free_port)
    ready_path: str = "/readyz/"
    process: asyncio.subprocess.Process | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    async def start(self) -> PlatformProcess:
        with self.log_path.open("ab") as log_file:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                self.module,
                cwd=ROOT,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        return self

    async def ready(self) -> bool:
        if self.kind == "grpc":
            return await grpc_serving(self.address, timeout_s=1.0)
        try:
            async with httpx.AsyncClient(base_url=self.url, timeout=2.0) as http:
                return (await http.get(self.ready_path)).status_code == 200
        except httpx.TransportError:
            return False

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not await self.ready():
            if self.returncode is not None:
                raise AssertionError(f"{self.name} exited with {self.returncode}:\n{self.output}")
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{self.name} not ready after {timeout_s} s:\n{self.output}")
            await asyncio.sleep(0.1)

    @property
    def returncode(self) -> int | None:
        assert self.process is not None
        return self.process.returncode

    def send(self, signum: signal.Signals) -> None:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signum)

    async def wait(self, timeout_s: float = 30.0) -> int:
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), timeout=timeout_s)

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited in time (test teardown)."""
        if self.process is None or self.process.returncode is not None:
            return
        self.send(signal.SIGTERM)
        try:
            await self.wait(20.0)
        except TimeoutError:
            self.send(signal.SIGKILL)
            await self.wait(10.0)

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        """The process's JSON log lines (anything else it printed is skipped)."""
        events = []
        for line in self.output.splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut short by SIGKILL
        return events

    def rpc_calls(self, method: str | None = None) -> int:
        """How many calls this gRPC server logged (its access log's `rpc` lines)."""
        return sum(
            1
            for event in self.log_events()
            if event.get("event") == "rpc" and (method is None or event.get("method") == method)
        )


def grpc_service(
    name: str,
    settings: Settings,
    log_dir: Path,
    port: int | None = None,
    **values: str | int | float,
) -> PlatformProcess:
    """`python -m services.<name>` on `port` (default: a free one)."""
    port = port or free_port()
    # Its /metrics on a free port too: replicas on one machine would clash on the default.
    metrics_port = {f"{name}_metrics_port": free_port()}
    env = process_env(settings, **{f"{name}_port": port, **metrics_port, **values})
    return PlatformProcess(
        name=f"{name}@{port}",
        module=f"services.{name}",
        env=env,
        log_path=log_dir / f"{name}-{port}-{len(list(log_dir.glob(f'{name}-{port}*')))}.log",
        kind="grpc",
        port=port,
    )


def gateway(settings: Settings, log_dir: Path, **values: str | int | float) -> PlatformProcess:
    port = free_port()
    env = process_env(settings, gateway_port=port, gateway_workers=1, **values)
    return PlatformProcess(
        name=f"gateway@{port}",
        module="gateway",
        env=env,
        log_path=log_dir / f"gateway-{port}.log",
        kind="http",
        port=port,
    )


def notifier(settings: Settings, log_dir: Path, **values: str | int | float) -> PlatformProcess:
    port = free_port()
    env = process_env(
        settings, notifier_health_port=port, notifier_consumer=f"notifier-{port}", **values
    )
    return PlatformProcess(
        name=f"notifier@{port}",
        module="services.notifier",
        env=env,
        log_path=log_dir / f"notifier-{port}.log",
        kind="http",
        port=port,
        ready_path="/health",
    )


def ipv4_target(*processes: PlatformProcess) -> str:
    """One gRPC target naming every replica: `ipv4:127.0.0.1:p1,127.0.0.1:p2`."""
    return "ipv4:" + ",".join(process.address for process in processes)
