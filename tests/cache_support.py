"""Helpers for the course-cache tests: reads through a gateway that say where the answer came
from, and a TCP proxy in front of the real Redis that can cut or freeze a gateway's view of
the event stream while the catalog keeps publishing to it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import httpx

from tests.conftest import User


@dataclass
class Read:
    status: int
    title: str | None
    etag: str | None
    source: str | None  # X-Cache: HIT, MISS, BYPASS
    sent_at: float
    received_at: float


async def read_course(http: httpx.AsyncClient, user: User, course_id: int) -> Read:
    sent_at = time.monotonic()
    response = await http.get(f"/api/courses/{course_id}/", headers=user.headers)
    received_at = time.monotonic()
    title = response.json()["title"] if response.status_code == 200 else None
    return Read(
        response.status_code,
        title,
        response.headers.get("etag"),
        response.headers.get("x-cache"),
        sent_at,
        received_at,
    )


async def until_cached(
    http: httpx.AsyncClient, user: User, course_id: int, timeout_s: float = 20.0
) -> Read:
    """Read until the shared cache answers (the gateway's reader syncs in the background)."""
    deadline = time.monotonic() + timeout_s
    while True:
        read = await read_course(http, user, course_id)
        if read.source == "HIT":
            return read
        assert time.monotonic() < deadline, f"never served from the cache: {read}"
        await asyncio.sleep(0.05)


@dataclass
class TcpProxy:
    """Forwards a loopback port to `upstream`. `cut()` closes every connection and refuses new
    ones (a Redis that is gone); `freeze()` keeps them open but passes nothing (a Redis that
    hangs); `restore()` undoes either."""

    upstream_host: str
    upstream_port: int
    port: int = 0
    _server: asyncio.Server | None = None
    _flowing: asyncio.Event = field(default_factory=asyncio.Event)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> TcpProxy:
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.upstream_host, self.upstream_port
            )
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        for end in (writer, up_writer):
            end.close()
            self._writers.discard(end)
        self._tasks.difference_update(pumps)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while chunk := await source.read(65536):
                await self._flowing.wait()
                sink.write(chunk)
                await sink.drain()

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await asyncio.sleep(0)

    def freeze(self) -> None:
        self._flowing.clear()

    async def restore(self) -> None:
        self._flowing.set()
        if self._server is not None and not self._server.is_serving():
            await self._server.wait_closed()
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def stop(self) -> None:
        await self.cut()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()
