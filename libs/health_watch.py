"""gRPC health that follows a dependency: a background probe, not a check per request.

Every `interval_s` the probe runs (e.g. `SELECT 1` on the service's database) with a
`timeout_s` bound; a failure or timeout turns the server's health NOT_SERVING, the next
success SERVING again. Only changes are logged, one short line each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.logging import get_logger
from libs.outages import describe

log = get_logger("health")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthServicer(health_pb2_grpc.HealthServicer):
    """grpc.health.v1 for grpc.aio, whose Watch streams end once graceful shutdown begins.

    Every client channel watches each replica's health (libs/grpc_client.py healthCheckConfig).
    A Watch stream is a call in flight like any other; with grpcio's own servicer the streams
    never end, so a stopping server waited out its whole shutdown grace for them. Here each
    watcher is told NOT_SERVING and its stream closes, and the server waits only for real calls.
    """

    def __init__(self) -> None:
        self._statuses: dict[str, int] = {"": SERVING}
        self._changed = asyncio.Condition()
        self._stopping = False

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: Any
    ) -> health_pb2.HealthCheckResponse:
        status = self._statuses.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "Unknown service.")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        sent: int | None = None
        while True:
            async with self._changed:  # read under the lock: no change is missed
                while self._status_of(request.service) == sent and not self._stopping:
                    await self._changed.wait()
                status, stopping = self._status_of(request.service), self._stopping
            if status != sent:  # written outside the lock: a slow client blocks nobody
                await context.write(health_pb2.HealthCheckResponse(status=status))
                sent = status
            if stopping:
                return

    def _status_of(self, service: str) -> int:
        return self._statuses.get(service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)

    async def set(self, service: str, status: int) -> None:
        """Set a service's status; ignored once graceful shutdown began."""
        async with self._changed:
            if not self._stopping:
                self._statuses[service] = status
                self._changed.notify_all()

    async def enter_graceful_shutdown(self) -> None:
        """Every service NOT_SERVING for good, and every Watch stream told so and ended."""
        async with self._changed:
            self._stopping = True
            self._statuses = dict.fromkeys(self._statuses, NOT_SERVING)
            self._changed.notify_all()


@dataclass(frozen=True)
class HealthProbe:
    """What a service's health depends on: `check` raises (or hangs) while it is unreachable."""

    name: str
    check: Callable[[], Awaitable[object]]
    interval_s: float
    timeout_s: float


async def probe_once(probe: HealthProbe) -> BaseException | None:
    """None when the dependency answered within the timeout, else why not."""
    try:
        await asyncio.wait_for(probe.check(), timeout=probe.timeout_s)
    except asyncio.CancelledError:
        raise
    except Exception as error:  # any failure means "not serving"; the log says which
        return error
    return None


async def watch(probe: HealthProbe, servicer: HealthServicer, services: Sequence[str]) -> None:
    """Keep `services` (and the server, "") SERVING exactly while the probe succeeds."""
    reported: int = SERVING  # what GrpcServer.start set
    while True:
        failure = await probe_once(probe)
        status = SERVING if failure is None else NOT_SERVING
        if status != reported:
            if failure is None:
                log.info("dependency reachable again", dependency=probe.name)
            else:
                log.warning(
                    "dependency unreachable", dependency=probe.name, error=describe(failure)
                )
            for name in ("", *services):
                await servicer.set(name, status)  # ignored once graceful shutdown began
            reported = status
        await asyncio.sleep(probe.interval_s)
