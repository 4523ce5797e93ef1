"""Every metrics endpoint of a real stack: identity, catalog, learning, a two-worker gateway and the
notifier as `python -m` processes, mail to a real SMTP server (aiosmtpd). After a few REST calls and
one course completion, each endpoint shows its counters moved, with route templates and method
names as labels, never ids."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client import REGISTRY

from libs.embedded import free_port
from libs.settings import Settings
from libs.streams import COURSE_COMPLETED_DLQ, COURSE_COMPLETED_STREAM, NOTIFIER_GROUP
from tests import process_support
from tests.conftest import register_and_login
from tests.learning_support import complete, enroll, progress_rows, published_course
from tests.metrics_support import Scrape, scrape
from tests.notifier_support import MailCatcher, eventually
from tests.process_support import PlatformProcess

IDENTITY = "courseplatform.identity.v1.IdentityService"
CATALOG = "courseplatform.catalog.v1.CatalogService"
LEARNING = "courseplatform.learning.v1.LearningService"


@dataclass
class Stack:
    metrics: dict[str, str]  # process name -> its /metrics URL
    gateway: PlatformProcess
    catalog_target: str
    processes: list[PlatformProcess]

    async def scrape_all(self) -> dict[str, Scrape]:
        names = list(self.metrics)
        scrapes = await asyncio.gather(*(scrape(self.metrics[name]) for name in names))
        return dict(zip(names, scrapes, strict=True))


@pytest.fixture(scope="module")
async def stack(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    log_dir = tmp_path_factory.mktemp("metrics-logs")
    catcher = MailCatcher().start()
    ports = {name: free_port() for name in ("identity", "catalog", "learning")}
    metrics_ports = {name: free_port() for name in (*ports, "gateway")}
    targets = {f"{name}_target": f"127.0.0.1:{port}" for name, port in ports.items()}
    processes = [
        process_support.grpc_service(
            name,
            settings,
            log_dir,
            port=ports[name],
            **{f"{name}_metrics_port": metrics_ports[name]},
            **targets,
            metrics_sample_interval_s=0.2,
            outbox_poll_interval_s=0.2,
        )
        for name in ("identity", "catalog", "learning")
    ]
    gateway_port = free_port()
    gateway = PlatformProcess(
        name=f"gateway@{gateway_port}",
        module="gateway",
        env=process_support.process_env(
            settings,
            gateway_port=gateway_port,
            gateway_workers=2,  # multiprocess mode: any worker answers for both
            gateway_metrics_port=metrics_ports["gateway"],
            **targets,
        ),
        log_path=log_dir / "gateway.log",
        kind="http",
        port=gateway_port,
    )
    notifier = process_support.notifier(
        settings,
        log_dir,
        smtp_host="127.0.0.1",
        smtp_port=catcher.port,
        notifier_reclaim_idle_ms=500,
        notifier_lease_s=0.4,
    )
    started: list[PlatformProcess] = []
    try:
        for process in (*processes, gateway, notifier):
            started.append(await process.start())
        for process in started:
            await process.wait_ready()
        yield Stack(
            metrics={
                **{
                    name: f"http://127.0.0.1:{metrics_ports[name]}/metrics"
                    for name in (*ports, "gateway")
                },
                "notifier": f"{notifier.url}/metrics",
            },
            gateway=gateway,
            catalog_target=targets["catalog_target"],
            processes=started,
        )
    finally:
        for process in reversed(started):
            await process.stop()
        catcher.stop()


def delta(after: Scrape, before: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


async def test_a_completion_moves_the_counters_of_every_process(stack: Stack) -> None:
    before = await stack.scrape_all()
    in_process_before = {
        schema: REGISTRY.get_sample_value(
            "courseplatform_outbox_published_total", {"schema": schema}
        )
        or 0
        for schema in ("learning", "catalog")
    }
    async with httpx.AsyncClient(base_url=stack.gateway.url, timeout=30) as client:
        instructor = await register_and_login(client, "Instructor")
        student = await register_and_login(client, "Student")
        wrong = await client.post(
            "/api/auth/login/", json={"email": student.email, "password": "not-the-password"}
        )
        assert wrong.status_code == 401
        course = await published_course(client, instructor, lessons=1)
        enrollment = await enroll(client, student, course.id)
        (row,) = await progress_rows(client, student, enrollment["id"])
        assert (await complete(client, student, row["id"])).status_code == 200
        missing = await client.get("/api/courses/999999999/", headers=student.headers)
        assert missing.status_code == 404

    async def mailed() -> bool:
        notifier = await scrape(stack.metrics["notifier"])
        return notifier.value("courseplatform_mail_sent_total", kind="course_completed") > (
            before["notifier"].value("courseplatform_mail_sent_total", kind="course_completed")
        )

    await eventually(mailed, timeout_s=30, what="the completion mail")
    await asyncio.sleep(0.5)  # one more backlog sample after the relay marked the row sent
    after = await stack.scrape_all()

    # Gateway: route templates, methods, status classes; both workers summed.
    gateway, gateway_before = after["gateway"], before["gateway"]
    requests = "courseplatform_http_requests_total"
    assert delta(gateway, gateway_before, requests, route="/api/register/", method="POST") == 2
    assert (
        delta(gateway, gateway_before, requests, route="/api/auth/login/", status_class="4xx") == 1
    )
    assert delta(gateway, gateway_before, requests, route="/api/auth/login/", status_class="2xx")
    assert delta(
        gateway,
        gateway_before,
        requests,
        route="/api/progress/{progress_id:id}/complete/",
        method="POST",
        status_class="2xx",
    )
    assert delta(
        gateway, gateway_before, requests, route="/api/courses/{course_id:id}/", status_class="4xx"
    )
    routes = gateway.label_values(requests, "route")
    assert not any(re.search(r"/\d+", route) for route in routes), routes  # no raw ids
    assert gateway.value("courseplatform_http_request_duration_seconds_count") >= 8
    assert gateway.has("courseplatform_http_requests_in_flight")
    assert delta(
        gateway,
        gateway_before,
        "grpc_client_handled_total",
        grpc_service=IDENTITY,
        grpc_method="Login",
        grpc_code="UNAUTHENTICATED",
    )

    # Services: server RPCs by service, method and code; learning's calls to catalog.
    identity = after["identity"]
    assert (
        delta(
            identity,
            before["identity"],
            "grpc_server_handled_total",
            grpc_service=IDENTITY,
            grpc_method="Register",
            grpc_code="OK",
        )
        == 2
    )
    assert delta(
        identity,
        before["identity"],
        "grpc_server_handled_total",
        grpc_method="Login",
        grpc_code="UNAUTHENTICATED",
    )
    assert identity.value("grpc_server_handling_seconds_count", grpc_method="Login") >= 3
    assert delta(
        after["catalog"],
        before["catalog"],
        "grpc_server_handled_total",
        grpc_service=CATALOG,
        grpc_method="GetCourse",
        grpc_code="NOT_FOUND",
    )
    learning, learning_before = after["learning"], before["learning"]
    assert delta(
        learning,
        learning_before,
        "grpc_server_handled_total",
        grpc_service=LEARNING,
        grpc_method="CompleteLesson",
        grpc_code="OK",
    )
    assert delta(
        learning,
        learning_before,
        "grpc_client_handled_total",
        grpc_target=stack.catalog_target,
        grpc_service=CATALOG,
        grpc_code="OK",
    )

    # Data: pool gauges and statement latency, per service.
    for name in ("identity", "catalog", "learning"):
        scraped = after[name]
        assert scraped.value("courseplatform_db_pool_size", service=name) == 3
        assert scraped.has("courseplatform_db_pool_connections", service=name, state="in_use")
        assert scraped.has("courseplatform_db_pool_connections", service=name, state="waiting")
        assert delta(
            scraped,
            before[name],
            "courseplatform_db_statement_duration_seconds_count",
            service=name,
        )
        # The process collector: CPU, memory, open file descriptors.
        for metric in ("process_cpu_seconds_total", "process_resident_memory_bytes"):
            assert scraped.value(metric) > 0, (name, metric)
        assert scraped.has("process_open_fds")

    # Events: learning's outbox published the completion, and nothing is left waiting. The
    # suite's own in-process services share the database, so their relay may have taken the row
    # (SKIP LOCKED): its counter is in this process's registry.
    for schema in ("learning", "catalog"):
        published = "courseplatform_outbox_published_total"
        in_process = (REGISTRY.get_sample_value(published, {"schema": schema}) or 0) - (
            in_process_before[schema]
        )
        assert delta(after[schema], before[schema], published, schema=schema) + in_process >= 1
    assert learning.has("courseplatform_outbox_unpublished", schema="learning")
    assert (
        learning.value("courseplatform_outbox_oldest_unpublished_age_seconds", schema="learning")
        < 60
    )

    # Notifier: the mail, its end-to-end latency, the stream and its group.
    notifier, notifier_before = after["notifier"], before["notifier"]
    assert (
        delta(notifier, notifier_before, "courseplatform_mail_sent_total", kind="course_completed")
        == 1
    )
    assert (
        delta(
            notifier,
            notifier_before,
            "courseplatform_mail_completion_to_accepted_seconds_count",
            kind="course_completed",
        )
        == 1
    )
    assert notifier.value("courseplatform_stream_length", stream=COURSE_COMPLETED_STREAM) >= 1
    assert notifier.has("courseplatform_stream_length", stream=COURSE_COMPLETED_DLQ)
    assert (
        notifier.value(
            "courseplatform_stream_group_pending",
            stream=COURSE_COMPLETED_STREAM,
            group=NOTIFIER_GROUP,
        )
        == 0
    )
    assert notifier.has(
        "courseplatform_stream_group_lag", stream=COURSE_COMPLETED_STREAM, group=NOTIFIER_GROUP
    )
    assert notifier.has("process_cpu_seconds_total")


async def test_metrics_stay_off_the_public_api(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway.url, timeout=10) as client:
        # On its own port here (GATEWAY_METRICS_PORT), so not on the REST port.
        assert (await client.get("/metrics")).status_code == 404
        schema = (await client.get("/api/schema/")).json()
    assert not any("metrics" in path for path in schema["paths"])
