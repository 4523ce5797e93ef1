"""Builds the learning gRPC server (with its outbox relay and its reader of catalog change
events) from settings."""

from __future__ import annotations

import grpc
from courseplatform.learning.v1 import learning_pb2, learning_pb2_grpc

from libs.db import create_engine, database_probe, session_factory
from libs.grpc_server import GrpcServer, ServiceDefinition
from libs.outbox_metrics import backlog_sampler
from libs.outbox_relay import OutboxRelay
from libs.revocations import RevocationFeed
from libs.settings import Settings
from libs.tokens import verifier_from_settings
from services.learning import store
from services.learning.api import LearningServicer
from services.learning.catalog_client import CatalogClient
from services.learning.course_changes import CourseChangeReader
from services.learning.usecases.enrollments import Enrollments
from services.learning.usecases.lesson_copies import LessonCopies
from services.learning.usecases.progress import ProgressTracker
from services.learning.usecases.reconciliation import Reconciler
from services.learning.usecases.roster import CourseViews
from services.learning.usecases.withdrawal import Withdrawals

SERVICE_NAME = learning_pb2.DESCRIPTOR.services_by_name["LearningService"].full_name


def build_server(settings: Settings, port: int | None = None) -> GrpcServer:
    engine = create_engine(settings, "learning")
    sessions = session_factory(engine)
    course_changes = CourseChangeReader(settings.redis_url, sessions)
    client = CatalogClient(
        settings.catalog_target,
        settings.grpc_client_timeout_s,
        count_sql_statements=settings.sql_statement_counting,
    )
    # The student use cases ask about courses through learning's own copy of their lessons,
    # which asks the catalog only when the copy cannot be trusted (usecases/lesson_copies.py).
    # The instructor views ask the catalog itself: it decides who owns a course.
    catalog = LessonCopies(
        client,
        sessions,
        course_changes.events_seen_since,
        max_age_s=settings.lesson_copy_max_age_s,
    )
    reconciler = Reconciler(sessions, catalog)
    servicer = LearningServicer(
        Enrollments(sessions, catalog, reconciler),
        ProgressTracker(sessions, catalog, reconciler),
        CourseViews(sessions, client),
        Withdrawals(sessions),
    )
    relay = OutboxRelay.from_settings(settings, store.outbox, sessions)
    verifier = verifier_from_settings(settings)
    # Token revocations from identity, loaded before serving, then followed.
    revocation_feed = RevocationFeed.from_settings(settings, verifier.revocations)

    def register(server: grpc.aio.Server) -> None:
        learning_pb2_grpc.add_LearningServiceServicer_to_server(servicer, server)

    async def on_stop() -> None:
        await catalog.close()
        await engine.dispose()

    definition = ServiceDefinition(
        full_name=SERVICE_NAME,
        register=register,
        background_tasks=[
            relay.run,
            course_changes.run,
            revocation_feed.run,
            backlog_sampler(settings, store.outbox, sessions),
        ],
        startup=[revocation_feed.load],
        on_stop=on_stop,
        health_probe=database_probe(engine, settings),
    )
    return GrpcServer(
        definition,
        verifier,
        host=settings.grpc_bind_host,
        port=settings.learning_port if port is None else port,
        shutdown_grace_s=settings.grpc_shutdown_grace_s,
        count_sql_statements=settings.sql_statement_counting,
        max_concurrent_calls=settings.grpc_max_concurrent_calls,
    )
