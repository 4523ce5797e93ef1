"""OpenTelemetry traces: one setup per process, and the hooks the shared code calls.

Off by default, and then nothing is installed (no interceptor, no middleware, no event hook: no
cost). On when OTEL_EXPORTER_OTLP_ENDPOINT is set (spans go to that collector over OTLP/gRPC; the
exporter reads the standard OTEL_EXPORTER_OTLP_* variables itself, OTEL_SERVICE_NAME overrides the
service name) or when TRACING_ENABLED=true (spans are made, and dropped unless an exporter is
given: the bench's "tracing on, no-op exporter", and trace ids in the logs without a collector).

What is traced: gRPC server and client calls (the official grpc instrumentation, health and
reflection left out), the gateway's requests (FastAPI instrumentation), SQL statements
(SQLAlchemy instrumentation), Redis commands (redis instrumentation), and the hops no library
knows: the outbox row keeps the W3C `traceparent` of the transaction that wrote it, the relay's
publish span continues that trace and writes its own `traceparent` into the stream entry, and the
notifier's processing span is a child of it, so the mail joins the trace of the request that
completed the course. The provider is passed to each instrumentation explicitly (never set as the
global one), so tests can trace in-process servers with an in-memory exporter and switch back off.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.metrics import NoOpMeter
from opentelemetry.propagators.textmap import default_getter, default_setter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.settings import Settings

TRACEPARENT = "traceparent"
_PROPAGATOR = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None
_redis_instrumented = False


class DroppingExporter(SpanExporter):
    """Accepts every batch and keeps nothing."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def configure(settings: Settings, service: str, exporter: SpanExporter | None = None) -> None:
    """This process's tracing, as its settings say; `exporter` (tests) forces it on."""
    global _provider
    endpoint = settings.otel_exporter_otlp_endpoint
    if exporter is None and not endpoint and not settings.tracing_enabled:
        return
    name = os.environ.get("OTEL_SERVICE_NAME") or f"courseplatform-{service}"
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:  # TRACING_ENABLED without a collector: the whole pipeline, the export a no-op
        provider.add_span_processor(BatchSpanProcessor(DroppingExporter()))
    _provider = provider
    _instrument_redis(provider)


def reset() -> None:
    """Tracing off again (tests): servers and engines built from now on are not traced."""
    global _provider, _redis_instrumented
    if _provider is not None:
        _provider.shutdown()
    _provider = None
    if _redis_instrumented:
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        RedisInstrumentor().uninstrument()
        _redis_instrumented = False


def shutdown() -> None:
    """Flush spans still queued for export (a process's last act)."""
    if _provider is not None:
        _provider.shutdown()


def enabled() -> bool:
    return _provider is not None


def tracer(name: str) -> trace.Tracer:
    return _provider.get_tracer(name) if _provider is not None else trace.NoOpTracer()


def _not_health_or_reflection() -> Any:
    from opentelemetry.instrumentation.grpc import filters

    return filters.negate(
        filters.any_of(filters.health_check(), filters.service_prefix("grpc.reflection.v1alpha"))
    )


def server_interceptor() -> grpc.aio.ServerInterceptor:
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    interceptor: grpc.aio.ServerInterceptor = aio_server_interceptor(  # type: ignore[no-untyped-call]
        tracer_provider=_provider, filter_=_not_health_or_reflection()
    )
    return interceptor


def client_interceptors() -> Sequence[grpc.aio.ClientInterceptor]:
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    interceptors: Sequence[grpc.aio.ClientInterceptor] = aio_client_interceptors(  # type: ignore[no-untyped-call]
        tracer_provider=_provider, filter_=_not_health_or_reflection()
    )
    return interceptors


def instrument_engine(engine: AsyncEngine) -> None:
    """One span per SQL statement of this engine (the official instrumentation's engine hooks;
    its instrumentor is per process, this is per engine)."""
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    usage = NoOpMeter("courseplatform").create_up_down_counter("db.client.connections.usage")
    EngineTracer(  # type: ignore[no-untyped-call]
        tracer("opentelemetry.instrumentation.sqlalchemy"), engine.sync_engine, usage
    )


def instrument_fastapi(app: Any) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=_provider, excluded_urls="healthz,readyz,metrics,api/docs,redoc"
    )


def _instrument_redis(provider: TracerProvider) -> None:
    # The redis instrumentation patches the client classes: once per process.
    global _redis_instrumented
    if _redis_instrumented:
        return
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    RedisInstrumentor().instrument(tracer_provider=provider)
    _redis_instrumented = True


# --- the hops through the outbox and the stream --------------------------------------------------


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, if there is one."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, setter=default_setter)
    return carrier.get(TRACEPARENT)


def context_of(traceparent: str | None) -> otel_context.Context | None:
    if not traceparent:
        return None
    return _PROPAGATOR.extract({TRACEPARENT: traceparent}, getter=default_getter)


@contextlib.contextmanager
def hop_span(name: str, kind: SpanKind, traceparent: str | None) -> Iterator[str | None]:
    """A span continuing the trace `traceparent` names (a producer or consumer hop); yields the
    traceparent to pass on: the new span's, or the one given when tracing is off."""
    if _provider is None:
        yield traceparent
        return
    with tracer("courseplatform.events").start_as_current_span(
        name, context=context_of(traceparent), kind=kind
    ):
        yield current_traceparent()
