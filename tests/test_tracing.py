"""Traces across the hops: a REST request with a W3C `traceparent` header produces spans in the
gateway, learning and catalog (and their SQL) under that one trace id, and the completion it makes
travels through the outbox row and the stream entry to the notifier, whose processing span joins
the same trace. In-process servers and gateway on real sockets, the SDK's in-memory exporter."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from libs import tracing
from libs.embedded import free_port
from libs.grpc_server import GrpcServer
from libs.settings import Settings
from libs.trace_ids import add_trace_ids
from tests.conftest import SERVICES, register_and_login, serve_asgi
from tests.learning_support import progress_rows, published_course
from tests.notifier_support import MailCatcher, eventually, fast_settings, running_notifier

LEARNING = "courseplatform.learning.v1.LearningService"
CATALOG = "courseplatform.catalog.v1.CatalogService"


@dataclass
class Traced:
    url: str
    exporter: InMemorySpanExporter
    catcher: MailCatcher

    def spans_of(self, trace_id: int) -> list[ReadableSpan]:
        return [
            span
            for span in self.exporter.get_finished_spans()
            if span.context is not None and span.context.trace_id == trace_id
        ]


@pytest.fixture(scope="module")
async def traced(settings: Settings) -> AsyncIterator[Traced]:
    """Servers and a gateway built with tracing on (and only they: tracing is reset after)."""
    exporter = InMemorySpanExporter()
    tracing.configure(settings, "tests", exporter=exporter)
    ports = {name: free_port() for name in SERVICES}
    traced_settings = settings.model_copy(
        update={
            **{f"{name}_port": port for name, port in ports.items()},
            **{f"{name}_target": f"127.0.0.1:{port}" for name, port in ports.items()},
            # A second set of servers next to the suite's: small pools (shared PostgreSQL).
            "db_pool_size": 2,
            "db_max_overflow": 2,
            # A first connection on a loaded machine can take more than the default 1 s.
            "health_check_timeout_s": 5.0,
        }
    )
    catcher = MailCatcher().start()
    servers: list[GrpcServer] = []
    try:
        for name in SERVICES:
            module = __import__(f"services.{name}.server", fromlist=["build_server"])
            server = module.build_server(traced_settings)
            await server.start()
            servers.append(server)
        from gateway.app import create_app
        from gateway.serving import uvicorn_options

        async with (
            serve_asgi(create_app(traced_settings), **uvicorn_options()) as url,
            running_notifier(fast_settings(traced_settings, catcher)),
        ):

            async def ready() -> bool:
                async with httpx.AsyncClient(base_url=url, timeout=10) as http:
                    return (await http.get("/readyz/")).status_code == 200

            await eventually(ready, what="every backend SERVING")
            yield Traced(url=url, exporter=exporter, catcher=catcher)
    finally:
        for server in reversed(servers):
            await server.stop()
        catcher.stop()
        tracing.reset()


def names(spans: list[ReadableSpan], kind: SpanKind) -> set[str]:
    return {span.name for span in spans if span.kind is kind}


def traceparent() -> tuple[int, str]:
    """A caller's trace id and the W3C header carrying it (a fresh parent span id)."""
    trace_id = uuid.uuid4().int
    span_id = uuid.uuid4().int & (2**64 - 1)
    return trace_id, f"00-{trace_id:032x}-{span_id:016x}-01"


async def test_one_trace_from_the_request_to_the_mail(traced: Traced) -> None:
    async with httpx.AsyncClient(base_url=traced.url, timeout=30) as client:
        instructor = await register_and_login(client, "Instructor")
        student = await register_and_login(client, "Student")
        course = await published_course(client, instructor, lessons=1)
        # Enrolling always asks the catalog (completing may answer from learning's lesson
        # copy): its trace shows the learning -> catalog hop.
        enroll_trace, enroll_header = traceparent()
        response = await client.post(
            "/api/enrollments/",
            json={"course": course.id},
            headers={**student.headers, "traceparent": enroll_header},
        )
        assert response.status_code == 201, response.text
        enrollment = response.json()
        (row,) = await progress_rows(client, student, enrollment["id"])
        trace_id, header = traceparent()
        parent_span_id = int(header.split("-")[2], 16)
        response = await client.post(
            f"/api/progress/{row['id']}/complete/",
            headers={**student.headers, "traceparent": header},
        )
        assert response.status_code == 200, response.text

    await eventually(lambda: bool(traced.catcher.to(student.email)), what="the mail")

    async def notifier_span_finished() -> bool:
        return any(s.name.endswith(" process") for s in traced.spans_of(trace_id))

    await eventually(notifier_span_finished, what="the notifier's span")
    spans = traced.spans_of(trace_id)

    # The gateway's server span is the child of the caller's span, so the trace is the caller's.
    (gateway_span,) = [
        s for s in spans if s.kind is SpanKind.SERVER and s.name.startswith("POST /api/progress/")
    ]
    assert gateway_span.parent is not None and gateway_span.parent.span_id == parent_span_id
    assert gateway_span.attributes is not None
    assert gateway_span.attributes.get("http.route") == "/api/progress/{progress_id:id}/complete/"
    servers = names(spans, SpanKind.SERVER)
    assert f"/{LEARNING}/CompleteLesson" in servers  # gateway -> learning
    clients = names(spans, SpanKind.CLIENT)
    assert f"/{LEARNING}/CompleteLesson" in clients
    # The enrollment's trace: gateway -> learning -> catalog, both sides of each hop.
    enroll_spans = traced.spans_of(enroll_trace)
    enroll_servers = names(enroll_spans, SpanKind.SERVER)
    enroll_clients = names(enroll_spans, SpanKind.CLIENT)
    assert f"/{LEARNING}/Enroll" in enroll_servers and f"/{LEARNING}/Enroll" in enroll_clients
    assert f"/{CATALOG}/GetCourseForEnrollment" in enroll_servers, enroll_servers
    assert f"/{CATALOG}/GetCourseForEnrollment" in enroll_clients, enroll_clients
    # SQL statements of the services, in the same trace.
    sql = [s for s in spans if s.attributes and s.attributes.get("db.system") == "postgresql"]
    assert sql, clients

    # Through the outbox row and the stream entry: the relay's publish, then the notifier.
    (publish,) = [s for s in spans if s.kind is SpanKind.PRODUCER]
    assert publish.name == "courseplatform.learning.course_completed.v1 publish"
    (process,) = [s for s in spans if s.kind is SpanKind.CONSUMER]
    assert process.name == "courseplatform.learning.course_completed.v1 process"
    assert process.parent is not None and process.parent.span_id == publish.context.span_id
    # The mail went out inside it: the notifier's SQL and Redis calls are its children.
    children = [s for s in spans if s.parent and s.parent.span_id == process.context.span_id]
    assert children, "the notifier's work is not under its span"
    # The relay's XADD is under the publish span (redis instrumentation).
    assert any(
        s.parent and s.parent.span_id == publish.context.span_id and "XADD" in s.name for s in spans
    )


async def test_health_checks_and_metrics_are_not_traced(traced: Traced) -> None:
    traced.exporter.clear()
    async with httpx.AsyncClient(base_url=traced.url, timeout=10) as client:
        assert (await client.get("/readyz/")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
    spans = traced.exporter.get_finished_spans()
    assert not [s for s in spans if s.kind is SpanKind.SERVER], [s.name for s in spans]
    assert not [s for s in spans if "grpc.health" in s.name]


@pytest.mark.unit
def test_log_lines_carry_the_trace_and_span_ids() -> None:
    # Wired into every process's log pipeline: test_a_traced_process_logs_the_callers_trace_id.
    assert add_trace_ids(None, "info", {"event": "x"}) == {"event": "x"}  # no span: nothing
    context = trace.SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=False,
        trace_flags=trace.TraceFlags(1),
    )
    with trace.use_span(trace.NonRecordingSpan(context)):
        event = add_trace_ids(None, "info", {"event": "x", "request_id": "r"})
    assert event == {
        "event": "x",
        "request_id": "r",
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": "b7ad6b7169203331",
    }


@pytest.mark.unit
def test_the_traceparent_survives_the_stream_entry_encoding() -> None:
    from libs.streams import decode_entry, encode_entry

    header = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    fields = encode_entry(b"e", "id", "type", traceparent=header)
    raw = {
        str(k).encode(): v if isinstance(v, bytes) else str(v).encode() for k, v in fields.items()
    }
    assert decode_entry(raw).traceparent == header
    assert "traceparent" not in encode_entry(b"e", "id", "type")  # tracing off: unchanged entries
    context = tracing.context_of(header)
    assert context is not None
    assert trace.get_current_span(context).get_span_context().trace_id == int(
        "0af7651916cd43dd8448eb211c80319c", 16
    )


async def test_a_traced_process_logs_the_callers_trace_id(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`python -m services.identity` with TRACING_ENABLED=true (no collector): its `rpc` log line
    carries the trace id of the traceparent the call came with, and a span id of its own."""
    import grpc
    from courseplatform.identity.v1 import identity_pb2, identity_pb2_grpc

    from tests import process_support

    identity = process_support.grpc_service(
        "identity",
        settings,
        tmp_path_factory.mktemp("traced-logs"),
        tracing_enabled="true",
        identity_metrics_port=free_port(),
    )
    await identity.start()
    try:
        await identity.wait_ready()
        trace_id = uuid.uuid4().int
        header = f"00-{trace_id:032x}-{0x1122334455667788:016x}-01"
        async with grpc.aio.insecure_channel(identity.address) as channel:
            stub = identity_pb2_grpc.IdentityServiceStub(channel)
            await stub.GetJwks(identity_pb2.GetJwksRequest(), metadata=(("traceparent", header),))

        def logged() -> list[dict[str, object]]:
            return [e for e in identity.log_events() if e.get("method") == "GetJwks"]

        await eventually(lambda: bool(logged()), what="the rpc line")
        (line,) = logged()
        assert line["trace_id"] == f"{trace_id:032x}"
        assert isinstance(line["span_id"], str) and len(line["span_id"]) == 16
        assert line["span_id"] != f"{0x1122334455667788:016x}"  # the server's own span
    finally:
        await identity.stop()
