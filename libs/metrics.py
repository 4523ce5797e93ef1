"""Prometheus metrics: every metric the platform exports, defined once, and how a process serves them.

Names and labels are a contract with the dashboards and alert rules under deploy/ (a test lists
them, tests/test_metrics_names.py). Cardinality is bounded by construction: labels hold route
templates, RPC method names, status codes, schema/stream names and fixed reasons; never user ids,
course ids, raw paths or error messages.

Processes:
- gRPC services: `serve_http(port, host)` (a daemon thread of prometheus-client) in their entry point;
- the gateway: `/metrics` on its own port, or on METRICS_PORT/GATEWAY_METRICS_PORT when set; with
  several uvicorn workers it uses prometheus-client's multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`,
  set by gateway/__main__.py before the workers start) so any worker answers for all;
- the notifier: `/metrics` on its health port (services/notifier/observability.py).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, cast

import grpc
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.logging import get_logger
from libs.settings import Settings

log = get_logger("metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Request latencies: 5 ms .. 10 s (the bench's budgets sit between 10 and 200 ms).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# SQL statements are faster than whole requests.
STATEMENT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
# completed_at -> mail accepted: seconds normally, minutes or hours while SMTP is out.
MAIL_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

# --- gateway (HTTP) ------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "courseplatform_http_requests",
    "HTTP requests answered by the gateway, by route template, method and status class.",
    ["route", "method", "status_class"],
)
HTTP_DURATION = Histogram(
    "courseplatform_http_request_duration_seconds",
    "Gateway request latency, by route template and method.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge(
    "courseplatform_http_requests_in_flight",
    "Requests the gateway is handling right now.",
    multiprocess_mode="livesum",
)

# --- gRPC (names as grpc-ecosystem/go-grpc-prometheus, so stock dashboards work too) -------------
GRPC_SERVER_HANDLED = Counter(
    "grpc_server_handled",
    "RPCs completed by the server, by service, method and status code.",
    ["grpc_service", "grpc_method", "grpc_code"],
)
GRPC_SERVER_HANDLING = Histogram(
    "grpc_server_handling_seconds",
    "Server-side latency of unary RPCs.",
    ["grpc_service", "grpc_method"],
    buckets=LATENCY_BUCKETS,
)
GRPC_CLIENT_HANDLED = Counter(
    "grpc_client_handled",
    "RPCs this process made to other services, by target, service, method and status code.",
    ["grpc_target", "grpc_service", "grpc_method", "grpc_code"],
)
GRPC_CLIENT_HANDLING = Histogram(
    "grpc_client_handling_seconds",
    "Client-side latency of unary RPCs (retries within the call included).",
    ["grpc_target", "grpc_service", "grpc_method"],
    buckets=LATENCY_BUCKETS,
)

# --- data ----------------------------------------------------------------------------------------
DB_STATEMENT_DURATION = Histogram(
    "courseplatform_db_statement_duration_seconds",
    "SQL statement latency as the driver sees it, by service (application name).",
    ["service"],
    buckets=STATEMENT_BUCKETS,
)
# Pool gauges are read from the pools at scrape time (PoolCollector below):
POOL_METRIC = "courseplatform_db_pool_connections"
POOL_SIZE_METRIC = "courseplatform_db_pool_size"

# --- events: outbox (sampled by libs/outbox_metrics.py) ------------------------------------------
OUTBOX_UNPUBLISHED = Gauge(
    "courseplatform_outbox_unpublished",
    "Outbox rows not yet published to their stream, by schema.",
    ["schema"],
)
OUTBOX_OLDEST_AGE = Gauge(
    "courseplatform_outbox_oldest_unpublished_age_seconds",
    "Age of the oldest unpublished outbox row (0 when none), by schema.",
    ["schema"],
)
OUTBOX_PUBLISHED = Counter(
    "courseplatform_outbox_published",
    "Outbox rows published to their stream, by schema.",
    ["schema"],
)
OUTBOX_PUBLISH_FAILURES = Counter(
    "courseplatform_outbox_publish_failures",
    "Failed relay rounds (Redis or PostgreSQL unreachable), by schema.",
    ["schema"],
)

# --- events: streams and mail (the notifier) -----------------------------------------------------
STREAM_LENGTH = Gauge(
    "courseplatform_stream_length",
    "Entries in a Redis stream (XLEN), dead-letter streams included.",
    ["stream"],
)
STREAM_GROUP_PENDING = Gauge(
    "courseplatform_stream_group_pending",
    "Entries delivered to the consumer group but not acknowledged (XINFO GROUPS pending).",
    ["stream", "group"],
)
STREAM_GROUP_LAG = Gauge(
    "courseplatform_stream_group_lag",
    "Entries of the stream the consumer group has not read yet (XINFO GROUPS lag).",
    ["stream", "group"],
)
MAILS_SENT = Counter("courseplatform_mail_sent", "Mails the transport accepted.", ["kind"])
MAIL_RETRIES = Counter(
    "courseplatform_mail_retries",
    "Quick retries of a mail within one delivery (after a transient failure).",
    ["kind"],
)
MAIL_FAILURES = Counter(
    "courseplatform_mail_failures",
    "Mail attempts the transport did not accept, by reason (transient, permanent).",
    ["kind", "reason"],
)
MAILS_DEAD_LETTERED = Counter(
    "courseplatform_mail_dead_lettered",
    "Entries moved to the dead-letter stream, by reason (malformed, refused, gave_up).",
    ["kind", "reason"],
)
MAIL_COMPLETION_TO_ACCEPTED = Histogram(
    "courseplatform_mail_completion_to_accepted_seconds",
    "From the enrollment's completed_at to the mail being accepted: the latency students feel.",
    ["kind"],
    buckets=MAIL_LATENCY_BUCKETS,
)
NOTIFIER_DEGRADED = Gauge(
    "courseplatform_notifier_degraded",
    "1 while the notifier is degraded for this reason (smtp_failing, dead_letters_grew), else 0.",
    ["reason"],
)

# Dead-letter reasons are the first word of the reason the notifier records ("refused: 550 ...").
DEAD_LETTER_REASONS = ("malformed", "refused", "gave_up")


def dead_letter_reason(reason: str) -> str:
    """The bounded label for a free-text dead-letter reason."""
    head = reason.split(":", 1)[0].strip().lower().replace(" ", "_")
    for known in DEAD_LETTER_REASONS:
        if head.startswith(known):
            return known
    return "other"


def port_for(settings: Settings, service: str) -> int | None:
    """Where `service` serves /metrics: METRICS_PORT when set (one port per pod in Kubernetes),
    else the service's own default (so `make run` starts them side by side); None: nowhere."""
    if not settings.metrics_enabled:
        return None
    if settings.metrics_port is not None:
        return settings.metrics_port
    port: int | None = getattr(settings, f"{service}_metrics_port", None)
    return port


def stream_kind(stream: str) -> str:
    """`courseplatform.learning.course_completed.v1` -> `course_completed`: a mail metric's kind."""
    parts = stream.split(".")
    return parts[-2] if len(parts) >= 2 else stream


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


# --- serving -------------------------------------------------------------------------------------


def registry() -> CollectorRegistry:
    """What a scrape answers: this process's registry, or every worker's in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        collected = CollectorRegistry()
        multiprocess.MultiProcessCollector(collected)  # type: ignore[no-untyped-call]
        return collected
    return REGISTRY


def exposition() -> tuple[bytes, str]:
    """The body and content type of a scrape."""
    return generate_latest(registry()), CONTENT_TYPE_LATEST


_enabled = True


def enabled() -> bool:
    """Whether servers, channels and engines built from now on record metrics."""
    return _enabled


def configure(settings: Settings) -> None:
    """Metrics on or off for this process, as its settings say (before building servers)."""
    global _enabled
    _enabled = settings.metrics_enabled


def start(settings: Settings, service: str, host: str) -> int | None:
    """`configure`, then the HTTP endpoint of a gRPC service. Returns its port, if any."""
    configure(settings)
    port = port_for(settings, service)
    if port is None:
        return None
    bound = serve_http(port, host)
    log.info("metrics", url=f"http://{host}:{bound}/metrics")
    return bound


def serve_http(port: int, host: str) -> int:
    """Serve /metrics on host:port from a daemon thread; returns the bound port (port 0: a free
    one). Raises OSError when the port is taken."""
    server, _thread = start_http_server(port, addr=host, registry=registry())
    return int(server.server_port)


# --- gRPC interceptors ---------------------------------------------------------------------------

# grpc-stubs types are generic only for the checker: spelled as strings, never evaluated.
Behavior = Callable[[Any, "grpc.aio.ServicerContext[Any, Any]"], Awaitable[Any]]
NextHandler = Callable[
    [grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler[Any, Any] | None"]
]


def split_method(path: str) -> tuple[str, str]:
    """`/pkg.Service/Method` -> (`pkg.Service`, `Method`)."""
    service, _, method = path.lstrip("/").rpartition("/")
    return service or "unknown", method or "unknown"


class ServerMetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts and times every unary RPC the server answers (its service, health, reflection)."""

    async def intercept_service(
        self, continuation: NextHandler, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler  # streams (health Watch, reflection) are long-lived: not timed
        service, method = split_method(handler_call_details.method)
        handled = GRPC_SERVER_HANDLED
        handling = GRPC_SERVER_HANDLING.labels(service, method)
        behavior = cast(Behavior, handler.unary_unary)

        async def measured(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            code = "UNKNOWN"
            try:
                response = await behavior(request, context)
                code = _code_name(context.code(), "OK")
                return response
            except BaseException:
                code = _code_name(context.code(), "UNKNOWN")
                raise
            finally:
                handling.observe(time.perf_counter() - started)
                handled.labels(service, method, code).inc()

        return grpc.unary_unary_rpc_method_handler(
            measured,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _code_name(code: Any, default: str) -> str:
    if isinstance(code, grpc.StatusCode):
        return code.name
    return default


class ClientMetricsInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Counts and times every unary call made on one channel; `target` is the configured target
    (one per backend, so bounded)."""

    def __init__(self, target: str) -> None:
        self._target = target

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        started = time.perf_counter()
        raw_method = client_call_details.method
        path = raw_method.decode() if isinstance(raw_method, bytes) else str(raw_method)
        service, method = split_method(path)
        call = await continuation(client_call_details, request)
        # Waiting for the status here does not change what the caller sees: awaiting the call
        # afterwards gives the same response or raises the same error.
        code = await call.code()
        elapsed = time.perf_counter() - started
        GRPC_CLIENT_HANDLING.labels(self._target, service, method).observe(elapsed)
        GRPC_CLIENT_HANDLED.labels(self._target, service, method, _code_name(code, "UNKNOWN")).inc()
        return call


# --- SQLAlchemy ----------------------------------------------------------------------------------


class PoolCollector(Collector):
    """Connection pool gauges, read from each instrumented engine's pool at scrape time."""

    def __init__(self) -> None:
        self._engines: weakref.WeakValueDictionary[int, AsyncEngine] = weakref.WeakValueDictionary()
        self._names: dict[int, str] = {}
        self._lock = threading.Lock()

    def add(self, engine: AsyncEngine, service: str) -> None:
        with self._lock:
            self._engines[id(engine)] = engine
            self._names[id(engine)] = service

    def collect(self) -> Iterable[Metric]:
        connections = GaugeMetricFamily(
            POOL_METRIC,
            "Pooled database connections by state: in_use, idle, overflow (beyond pool_size), "
            "waiting (callers queued for a connection).",
            labels=["service", "state"],
        )
        size = GaugeMetricFamily(POOL_SIZE_METRIC, "Configured pool size.", labels=["service"])
        with self._lock:
            engines = [(self._names[key], engine) for key, engine in self._engines.items()]
        totals: dict[tuple[str, str], float] = {}
        sizes: dict[str, float] = {}
        for service, engine in engines:
            for state, value in _pool_state(engine.sync_engine.pool).items():
                totals[(service, state)] = totals.get((service, state), 0) + value
            sizes[service] = sizes.get(service, 0) + _call_int(engine.sync_engine.pool, "size")
        for (service, state), total in sorted(totals.items()):
            connections.add_metric([service, state], total)
        for service, configured in sorted(sizes.items()):
            size.add_metric([service], configured)
        yield connections
        yield size


def _call_int(pool: Any, name: str) -> int:
    method = getattr(pool, name, None)
    return int(method()) if callable(method) else 0


def _pool_state(pool: Any) -> dict[str, int]:
    in_use = _call_int(pool, "checkedout")
    state = {
        "in_use": in_use,
        "idle": _call_int(pool, "checkedin"),
        "overflow": max(0, _call_int(pool, "overflow")),
        "waiting": _waiting(pool),
    }
    return state


def _waiting(pool: Any) -> int:
    # SQLAlchemy has no public count of callers waiting for a connection; its asyncio pool keeps
    # them as the getters of an asyncio.Queue, created on first use. Best effort: 0 if absent.
    queue = getattr(getattr(pool, "_pool", None), "__dict__", {}).get("_queue")
    # len() only: the scrape thread must not iterate a deque the event loop is changing.
    getters = getattr(queue, "_getters", None)
    return len(getters) if getters is not None else 0


_POOLS = PoolCollector()
_pools_registered = False
_STATEMENT_START = "courseplatform_metrics_started"


def instrument_engine(engine: AsyncEngine, service: str) -> None:
    """Pool gauges and statement latency for one engine (two event hooks, ~2 µs a statement)."""
    global _pools_registered
    if not _pools_registered:
        REGISTRY.register(_POOLS)
        _pools_registered = True
    _POOLS.add(engine, service)
    histogram = DB_STATEMENT_DURATION.labels(service)

    def before(
        conn: Any, cursor: Any, statement: Any, params: Any, context: Any, many: Any
    ) -> None:
        conn.info.setdefault(_STATEMENT_START, []).append(time.perf_counter())

    def after(conn: Any, cursor: Any, statement: Any, params: Any, context: Any, many: Any) -> None:
        starts = conn.info.get(_STATEMENT_START)
        if starts:
            histogram.observe(time.perf_counter() - starts.pop())

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    event.listen(engine.sync_engine, "after_cursor_execute", after)


def metric_names() -> Iterator[tuple[str, tuple[str, ...]]]:
    """Every metric family this module defines (pool gauges included) with its label names."""
    for metric in (
        HTTP_REQUESTS,
        HTTP_DURATION,
        HTTP_IN_FLIGHT,
        GRPC_SERVER_HANDLED,
        GRPC_SERVER_HANDLING,
        GRPC_CLIENT_HANDLED,
        GRPC_CLIENT_HANDLING,
        DB_STATEMENT_DURATION,
        OUTBOX_UNPUBLISHED,
        OUTBOX_OLDEST_AGE,
        OUTBOX_PUBLISHED,
        OUTBOX_PUBLISH_FAILURES,
        STREAM_LENGTH,
        STREAM_GROUP_PENDING,
        STREAM_GROUP_LAG,
        MAILS_SENT,
        MAIL_RETRIES,
        MAIL_FAILURES,
        MAILS_DEAD_LETTERED,
        MAIL_COMPLETION_TO_ACCEPTED,
        NOTIFIER_DEGRADED,
    ):
        yield metric._name, tuple(metric._labelnames)
    yield POOL_METRIC, ("service", "state")
    yield POOL_SIZE_METRIC, ("service",)
