"""gRPC health that follows a dependency: a background probe, not a check per request.

Every `interval_s` the probe runs (e.g. `SELECT 1` on the service's database) with a
`timeout_s` bound; a failure or timeout turns the server's health NOT_SERVING, the next
success SERVING again. Only changes are logged, one short line each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from grpc_health.v1 import health, health_pb2

from libs.logging import get_logger
from libs.outages import describe

log = get_logger("health")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


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


async def watch(
    probe: HealthProbe, servicer: health.aio.HealthServicer, services: Sequence[str]
) -> None:
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
