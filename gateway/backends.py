"""The gateway's gRPC clients: one long-lived channel per backend, opened in the app lifespan."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import grpc
from courseplatform.catalog.v1 import catalog_pb2_grpc
from courseplatform.identity.v1 import identity_pb2_grpc
from courseplatform.learning.v1 import learning_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.grpc_client import open_channel
from libs.settings import Settings

HEALTH_TIMEOUT_S = 1.0


@dataclass
class Backends:
    identity: identity_pb2_grpc.IdentityServiceStub
    catalog: catalog_pb2_grpc.CatalogServiceStub
    learning: learning_pb2_grpc.LearningServiceStub
    channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)

    @classmethod
    def open(cls, settings: Settings) -> Backends:
        timeout = settings.grpc_client_timeout_s
        count = settings.sql_statement_counting
        channels = {
            name: open_channel(target, timeout, count_sql_statements=count)
            for name, target in (
                ("identity", settings.identity_target),
                ("catalog", settings.catalog_target),
                ("learning", settings.learning_target),
            )
        }
        return cls(
            identity=identity_pb2_grpc.IdentityServiceStub(channels["identity"]),
            catalog=catalog_pb2_grpc.CatalogServiceStub(channels["catalog"]),
            learning=learning_pb2_grpc.LearningServiceStub(channels["learning"]),
            channels=channels,
        )

    async def close(self) -> None:
        await asyncio.gather(*(channel.close() for channel in self.channels.values()))

    async def health(self) -> dict[str, str]:
        """Each backend's gRPC health status: SERVING, or UNAVAILABLE when no replica serves
        (the channels skip replicas that report NOT_SERVING, so none is left to ask), or
        NOT_SERVING from a replica that stopped serving since the channel last looked."""

        async def check(channel: grpc.aio.Channel) -> str:
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                # types-grpcio-health-checking declares HealthStub without its methods.
                response = await stub.Check(  # type: ignore[attr-defined]
                    health_pb2.HealthCheckRequest(service=""), timeout=HEALTH_TIMEOUT_S
                )
            except grpc.RpcError:
                return "UNAVAILABLE"
            return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

        names = list(self.channels)
        results = await asyncio.gather(*(check(self.channels[name]) for name in names))
        return dict(zip(names, results, strict=True))
