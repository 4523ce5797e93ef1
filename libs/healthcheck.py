"""`python -m libs.healthcheck HOST:PORT`: exit 0 when the gRPC server there reports SERVING.

For container health checks and scripts, where grpcurl or grpc_health_probe may not be installed.
"""

from __future__ import annotations

import asyncio
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


async def check(target: str, timeout_s: float = 2.0) -> bool:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            # types-grpcio-health-checking declares HealthStub without its methods.
            reply: health_pb2.HealthCheckResponse = await stub.Check(  # type: ignore[attr-defined]
                health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
            )
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m libs.healthcheck HOST:PORT")
    sys.exit(0 if asyncio.run(check(sys.argv[1])) else 1)


if __name__ == "__main__":
    main()
