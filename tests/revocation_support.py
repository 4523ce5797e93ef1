"""Helpers for the revocation and administration tests: a TCP relay that can be cut (a real
network outage between a verifier and Redis), calls of each verifier, and polling with a
deadline."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlparse

import grpc
import httpx
from courseplatform.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from courseplatform.identity.v1 import identity_pb2, identity_pb2_grpc
from courseplatform.learning.v1 import learning_pb2, learning_pb2_grpc

from libs.embedded import free_port
from libs.grpc_server import GrpcServer
from libs.settings import Settings
from services.identity.create_admin import create_admin
from tests.conftest import TEST_PASSWORD, User, unique_email

# Item 5 of issue #14: a revoked token is refused everywhere within this long.
REVOCATION_DEADLINE_S = 5.0


class TcpRelay:
    """Relays loopback connections to `target`. `cut()` drops every connection and stops
    listening (connections are refused, as when the network or the server is down);
    `restore()` listens on the same port again."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> TcpRelay:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._writers.difference_update((writer, up_writer))

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        self._server = None

    async def restore(self) -> None:
        await self.start()

    async def stop(self) -> None:
        if self._server is not None:
            await self.cut()


def relayed_redis_url(redis_url: str, relay: TcpRelay) -> str:
    parsed = urlparse(redis_url)
    return f"redis://127.0.0.1:{relay.port}{parsed.path}"


def redis_address(redis_url: str) -> tuple[str, int]:
    parsed = urlparse(redis_url)
    return parsed.hostname or "127.0.0.1", parsed.port or 6379


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def status_of(error: BaseException) -> grpc.StatusCode:
    assert isinstance(error, grpc.aio.AioRpcError), repr(error)
    return error.code()


async def grpc_status(call: Awaitable[object]) -> grpc.StatusCode:
    """OK, or the status code the call failed with."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@asynccontextmanager
async def started(server: GrpcServer) -> AsyncIterator[str]:
    """A gRPC server started for one test; yields its target."""
    port = await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop()


class Verifiers:
    """One call per verifier that needs an access token and succeeds for a student: the gateway
    (REST), and identity, catalog and learning directly over gRPC."""

    def __init__(self, http: httpx.AsyncClient, targets: dict[str, str]) -> None:
        self.http = http
        self.targets = targets
        self._channels = {name: grpc.aio.insecure_channel(t) for name, t in targets.items()}

    async def close(self) -> None:
        await asyncio.gather(*(channel.close() for channel in self._channels.values()))

    async def statuses(self, token: str) -> dict[str, object]:
        """What each verifier answers for `token`: HTTP status for the gateway (a route the
        gateway verifies itself first), gRPC code names for the services."""
        metadata = bearer(token)
        rest = await self.http.get("/api/users/me/", headers={"Authorization": f"Bearer {token}"})
        verify = await self.http.post("/api/token/verify/", json={"token": token})
        identity = identity_pb2_grpc.IdentityServiceStub(self._channels["identity"])
        catalog = catalog_pb2_grpc.CatalogServiceStub(self._channels["catalog"])
        learning = learning_pb2_grpc.LearningServiceStub(self._channels["learning"])
        codes = await asyncio.gather(
            grpc_status(identity.GetUser(identity_pb2.GetUserRequest(), metadata=metadata)),
            grpc_status(
                catalog.ListCourses(catalog_pb2.ListCoursesRequest(page_size=1), metadata=metadata)
            ),
            grpc_status(
                learning.ListEnrollments(
                    learning_pb2.ListEnrollmentsRequest(page_size=1), metadata=metadata
                )
            ),
        )
        return {
            "gateway": rest.status_code,
            "token_verify": verify.status_code,
            "identity": codes[0].name,
            "catalog": codes[1].name,
            "learning": codes[2].name,
        }


ACCEPTED = {
    "gateway": 200,
    "token_verify": 200,
    "identity": "OK",
    "catalog": "OK",
    "learning": "OK",
}
REFUSED = {
    "gateway": 401,
    "token_verify": 401,
    "identity": "UNAUTHENTICATED",
    "catalog": "UNAUTHENTICATED",
    "learning": "UNAUTHENTICATED",
}


async def seconds_until(
    check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 15.0
) -> float:
    """How long until `check()` holds (polled every 50 ms); fails past `timeout_s`."""
    began = time.monotonic()
    while not await check():
        if time.monotonic() - began > timeout_s:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - began


async def login(http: httpx.AsyncClient, email: str, password: str = TEST_PASSWORD) -> dict:
    response = await http.post("/api/auth/login/", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


async def admin_user(http: httpx.AsyncClient, settings: Settings) -> User:
    """An administrator made by the create-admin command's own code, logged in over REST."""
    email = unique_email("admin")
    user, created = await create_admin(
        settings, email=email, full_name="Ada Admin", password=TEST_PASSWORD
    )
    assert created and user.role == "Admin"
    tokens = await login(http, email)
    return User(
        id=user.id,
        email=email,
        full_name="Ada Admin",
        role="Admin",
        access=tokens["access"],
        refresh=tokens["refresh"],
    )
