"""Builds the catalog gRPC server (with its outbox relay) from settings."""

from __future__ import annotations

import grpc
from courseplatform.catalog.v1 import catalog_pb2, catalog_pb2_grpc

from libs.db import create_engine, database_probe, session_factory
from libs.grpc_server import GrpcServer, ServiceDefinition
from libs.outbox_metrics import backlog_sampler
from libs.outbox_relay import OutboxRelay
from libs.revocations import RevocationFeed
from libs.settings import Settings
from libs.tokens import verifier_from_settings
from services.catalog import store
from services.catalog.api import CatalogServicer
from services.catalog.usecases import Catalog

SERVICE_NAME = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name


def build_server(settings: Settings, port: int | None = None) -> GrpcServer:
    engine = create_engine(settings, "catalog")
    sessions = session_factory(engine)
    servicer = CatalogServicer(Catalog(sessions))
    # CourseChanged events to their stream; one relay per replica, they share the table.
    relay = OutboxRelay.from_settings(settings, store.outbox, sessions)
    verifier = verifier_from_settings(settings)
    # Token revocations from identity, loaded before serving, then followed.
    revocation_feed = RevocationFeed.from_settings(settings, verifier.revocations)

    def register(server: grpc.aio.Server) -> None:
        catalog_pb2_grpc.add_CatalogServiceServicer_to_server(servicer, server)

    # Every method needs an access token: visibility follows from the caller's claims alone.
    definition = ServiceDefinition(
        full_name=SERVICE_NAME,
        register=register,
        background_tasks=[
            relay.run,
            revocation_feed.run,
            backlog_sampler(settings, store.outbox, sessions),
        ],
        startup=[revocation_feed.load],
        on_stop=engine.dispose,
        health_probe=database_probe(engine, settings),
    )
    return GrpcServer(
        definition,
        verifier,
        host=settings.grpc_bind_host,
        port=settings.catalog_port if port is None else port,
        shutdown_grace_s=settings.grpc_shutdown_grace_s,
        count_sql_statements=settings.sql_statement_counting,
        max_concurrent_calls=settings.grpc_max_concurrent_calls,
    )
