"""Builds the identity gRPC server from settings."""

from __future__ import annotations

import grpc
from courseplatform.identity.v1 import identity_pb2, identity_pb2_grpc

from libs.db import create_engine, database_probe, session_factory
from libs.grpc_server import GrpcServer, ServiceDefinition
from libs.settings import Settings
from libs.signing_keys import ensure_signing_key
from libs.tokens import JwksFile, issuer_from_settings, verifier_from_settings
from services.identity.api import PUBLIC_METHODS, IdentityServicer
from services.identity.passwords import Passwords
from services.identity.usecases import Accounts

SERVICE_NAME = identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name


def build_server(settings: Settings, port: int | None = None) -> GrpcServer:
    ensure_signing_key(settings.jwt_keys_dir)
    issuer = issuer_from_settings(settings)
    verifier = verifier_from_settings(settings)
    engine = create_engine(settings, "identity")
    accounts = Accounts(session_factory(engine), Passwords(settings), issuer, verifier)
    servicer = IdentityServicer(accounts, verifier, JwksFile(settings.jwt_keys_dir))

    def register(server: grpc.aio.Server) -> None:
        identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server)

    definition = ServiceDefinition(
        full_name=SERVICE_NAME,
        register=register,
        public_methods=PUBLIC_METHODS,
        on_stop=engine.dispose,
        health_probe=database_probe(engine, settings),
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
