"""Builds the identity gRPC server from settings."""

from __future__ import annotations

import grpc
from courseplatform.identity.v1 import identity_pb2, identity_pb2_grpc

from libs.client_address import parse_networks
from libs.db import create_engine, database_probe, session_factory
from libs.grpc_server import GrpcServer, ServiceDefinition
from libs.outbox_relay import OutboxRelay
from libs.revocations import RevocationFeed, RevocationPublisher
from libs.settings import Settings
from libs.signing_keys import ensure_signing_key
from libs.tokens import JwksFile, issuer_from_settings, verifier_from_settings
from services.identity import store
from services.identity.admin import UserAdministration
from services.identity.api import PUBLIC_METHODS, IdentityServicer
from services.identity.password_reset import PasswordResets, ResetPolicy
from services.identity.passwords import Passwords
from services.identity.throttling import LoginThrottle
from services.identity.usecases import Accounts

SERVICE_NAME = identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name


def build_server(settings: Settings, port: int | None = None) -> GrpcServer:
    ensure_signing_key(settings.jwt_keys_dir)
    issuer = issuer_from_settings(settings)
    verifier = verifier_from_settings(settings)
    engine = create_engine(settings, "identity")
    sessions = session_factory(engine)
    # Revocations go out on the stream and into this process's own list at once; the feed
    # brings those of the other identity replicas.
    publisher = RevocationPublisher.from_settings(settings, verifier.revocations)
    revocation_feed = RevocationFeed.from_settings(settings, verifier.revocations)
    passwords = Passwords(settings)
    throttle = LoginThrottle.from_settings(settings)
    accounts = Accounts(sessions, passwords, issuer, verifier, throttle, publisher)
    resets = PasswordResets(sessions, passwords, ResetPolicy.from_settings(settings), publisher)
    servicer = IdentityServicer(
        accounts,
        verifier,
        JwksFile(settings.jwt_keys_dir),
        resets,
        parse_networks(settings.trusted_gateways),
        UserAdministration(sessions, publisher),
    )
    # PasswordResetRequested events to their stream; one relay per replica, they share the table.
    relay = OutboxRelay.from_settings(settings, store.outbox, sessions)

    async def on_stop() -> None:
        await publisher.close()
        await engine.dispose()

    def register(server: grpc.aio.Server) -> None:
        identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server)

    definition = ServiceDefinition(
        full_name=SERVICE_NAME,
        register=register,
        public_methods=PUBLIC_METHODS,
        on_stop=on_stop,
        health_probe=database_probe(engine, settings),
        background_tasks=[relay.run, revocation_feed.run],
        startup=[revocation_feed.load],
    )
    return GrpcServer(
        definition,
        verifier,
        host=settings.grpc_bind_host,
        port=settings.identity_port if port is None else port,
        shutdown_grace_s=settings.grpc_shutdown_grace_s,
        count_sql_statements=settings.sql_statement_counting,
        max_concurrent_calls=settings.grpc_max_concurrent_calls,
    )
