"""The course cache when the event stream is unreachable: a real gateway process reads the
suite's Redis through a TCP proxy, which the test cuts (connections reset, new ones refused)
or freezes (connections open, nothing passes), while the catalog keeps writing and publishing
to the real Redis. The gateway must stop serving from its cache (answers come from the
catalog, so they are current), and serve from it again only after its reader has resynced,
never with an entry from before the gap."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from courseplatform.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from google.protobuf.field_mask_pb2 import FieldMask

from libs.settings import Settings
from tests.cache_support import Read, TcpProxy, read_course, until_cached
from tests.conftest import User
from tests.learning_support import published_course
from tests.process_support import PlatformProcess, gateway

BOUND_S = 1.0


@pytest.fixture(scope="module")
async def proxy(redis_url: str) -> AsyncIterator[TcpProxy]:
    host_port = redis_url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    running = await TcpProxy(host, int(port)).start()
    yield running
    await running.stop()


@pytest.fixture(scope="module")
async def proxied(
    settings: Settings,
    services: dict[str, str],
    proxy: TcpProxy,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway process whose only way to Redis is the proxy."""
    logs: Path = tmp_path_factory.mktemp("cache-outage-logs")
    database = settings.redis_url.rsplit("/", 1)[1]
    process: PlatformProcess = gateway(
        settings,
        logs,
        redis_url=f"redis://127.0.0.1:{proxy.port}/{database}",
        course_cache_max_age_s=300,
        log_level="WARNING",
        **{f"{name}_target": target for name, target in services.items()},
    )
    await process.start()
    try:
        await process.wait_ready()
        async with httpx.AsyncClient(base_url=process.url, timeout=30) as http:
            yield http
    finally:
        await process.stop()


@pytest.fixture(scope="module")
async def catalog(services: dict[str, str]) -> AsyncIterator[catalog_pb2_grpc.CatalogServiceStub]:
    async with grpc.aio.insecure_channel(services["catalog"]) as channel:
        yield catalog_pb2_grpc.CatalogServiceStub(channel)


async def rename(
    catalog: catalog_pb2_grpc.CatalogServiceStub, instructor: User, course_id: int, title: str
) -> float:
    """Rename over gRPC (not through the gateway under test); returns when it was acknowledged."""
    await catalog.UpdateCourse(
        catalog_pb2.UpdateCourseRequest(
            course_id=course_id, title=title, update_mask=FieldMask(paths=["title"])
        ),
        metadata=(("authorization", f"Bearer {instructor.access}"),),
    )
    return time.monotonic()


async def reads_for(
    http: httpx.AsyncClient, user: User, course_id: int, seconds: float
) -> list[Read]:
    reads = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        reads.append(await read_course(http, user, course_id))
        await asyncio.sleep(0.01)
    return reads


def assert_current_after_bound(reads: list[Read], acked_at: float, title: str) -> None:
    late = [read for read in reads if read.sent_at - acked_at > BOUND_S]
    assert late, "no read after the bound"
    assert all(read.status == 200 and read.title == title for read in late), late
    # Current because they came from the catalog: the cache is not serving.
    assert {read.source for read in late} == {"BYPASS"}


async def test_a_stream_outage_bypasses_the_cache_and_it_resumes_after_resyncing(
    client: httpx.AsyncClient,
    proxied: httpx.AsyncClient,
    proxy: TcpProxy,
    catalog: catalog_pb2_grpc.CatalogServiceStub,
    instructor: User,
    student: User,
) -> None:
    course = await published_course(client, instructor, lessons=1)
    assert (await until_cached(proxied, student, course.id)).title == course.title

    # Redis gone for the gateway: connections reset, new ones refused.
    await proxy.cut()
    acked_at = await rename(catalog, instructor, course.id, "Renamed while cut off")
    reads = await reads_for(proxied, student, course.id, BOUND_S + 0.5)
    stale = [read for read in reads if read.title != "Renamed while cut off"]
    print(f"\ncut: {len(stale)} of {len(reads)} reads old (all within {BOUND_S} s)")
    assert_current_after_bound(reads, acked_at, "Renamed while cut off")

    # Back: the reader resyncs, and the entry from before the gap never comes back.
    await proxy.restore()
    resumed = await until_cached(proxied, student, course.id)
    assert resumed.title == "Renamed while cut off"


async def test_a_hung_stream_bypasses_the_cache_within_the_bound(
    client: httpx.AsyncClient,
    proxied: httpx.AsyncClient,
    proxy: TcpProxy,
    catalog: catalog_pb2_grpc.CatalogServiceStub,
    instructor: User,
    student: User,
) -> None:
    course = await published_course(client, instructor, lessons=1)
    assert (await until_cached(proxied, student, course.id)).title == course.title

    # Redis hangs for the gateway: connections stay open, nothing comes back.
    proxy.freeze()
    acked_at = await rename(catalog, instructor, course.id, "Renamed while frozen")
    reads = await reads_for(proxied, student, course.id, BOUND_S + 0.5)
    stale = [read for read in reads if read.title != "Renamed while frozen"]
    print(f"\nfrozen: {len(stale)} of {len(reads)} reads old (all within {BOUND_S} s)")
    assert_current_after_bound(reads, acked_at, "Renamed while frozen")

    await proxy.restore()
    resumed = await until_cached(proxied, student, course.id)
    assert resumed.title == "Renamed while frozen"
    # While it was frozen the event waited in the proxy; after it, changes flow again.
    acked_at = await rename(catalog, instructor, course.id, "Renamed after")
    while (read := await read_course(proxied, student, course.id)).title != "Renamed after":
        assert read.sent_at - acked_at <= BOUND_S, read


async def test_stopping_the_reader_at_any_moment_of_its_start_is_prompt(redis_url: str) -> None:
    """A cancellation landing while redis-py connects was swallowed, the reader went on, and a
    gateway that failed to bind its port never finished shutting down."""
    from gateway.course_cache import PublicCourseCache
    from gateway.course_events import CourseChangeReader

    for delay_ms in (0, 0.5, 1, 2, 3, 5, 10, 50):
        cache: PublicCourseCache[Any, Any] = PublicCourseCache()
        reader = CourseChangeReader(redis_url, cache)
        reader.start()
        await asyncio.sleep(delay_ms / 1000)
        await asyncio.wait_for(reader.stop(), timeout=2.0)
        assert not cache.serving
