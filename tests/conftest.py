"""Real servers for the whole suite: PostgreSQL, Redis, every gRPC service and the gateway.

PostgreSQL: DATABASE_URL if set, else 127.0.0.1:5432 if it answers, else an embedded one. Each run
creates its own database and drops it at the end, so runs never collide.
Redis: REDIS_URL if set, else 127.0.0.1:6379 if it answers (on a leased logical database), else
an embedded one.
Services run in this process on free loopback ports, the gateway under uvicorn on a real socket.
"""

from __future__ import annotations

import os

# Before grpc is imported: the suite forks child processes while gRPC threads are busy (pgserver
# runs pg_ctl as another user, which rules out vfork), and grpc's fork handlers then crash the
# child (SIGSEGV) before it execs. Nothing here relies on gRPC surviving a fork.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from libs import migrations
from libs.db import create_engine
from libs.embedded import (
    EmbeddedPostgres,
    EmbeddedRedis,
    drop_database,
    ensure_database,
    free_port,
    postgres_answers,
    tcp_port_open,
)
from libs.grpc_server import GrpcServer
from libs.settings import Settings, to_libpq_url
from libs.signing_keys import ensure_signing_key
from tests.notifier_support import MailCatcher

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
# Services started for the suite, in dependency order, and whose migrations run.
SERVICES: tuple[str, ...] = ("identity", "catalog", "learning")
# Services with a schema but no gRPC server (the tests start them themselves).
MIGRATED_ONLY: tuple[str, ...] = ("notifier",)
TEST_PASSWORD = "correct-horse-42"
# Every PostgreSQL and Redis fixture below depends on one of these: a test marked `unit` (the
# `make unit` tier, run with no servers) may need neither.
SERVER_FIXTURE_ROOTS = frozenset({"admin_database_url", "redis_url"})


@pytest.hookimpl(tryfirst=True)  # before `-m` selects on the markers added here
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test not marked `unit` as `integration`; refuse a `unit` test needing servers."""
    misplaced = []
    for item in items:
        if item.get_closest_marker("unit") is None:
            item.add_marker(pytest.mark.integration)
            continue
        needs = SERVER_FIXTURE_ROOTS.intersection(getattr(item, "fixturenames", ()))
        if needs:
            misplaced.append(f"{item.nodeid} needs {', '.join(sorted(needs))}")
    if misplaced:
        raise pytest.UsageError(
            "tests marked unit that need PostgreSQL or Redis:\n" + "\n".join(misplaced)
        )


@pytest.fixture(scope="session")
def admin_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if url := os.environ.get("DATABASE_URL"):
        yield to_libpq_url(url)
    elif postgres_answers(LOCAL_POSTGRES):
        yield LOCAL_POSTGRES
    else:
        server = EmbeddedPostgres(tmp_path_factory.mktemp("postgres"))
        yield server.url()
        server.stop()


@pytest.fixture(scope="session")
def database_url(admin_database_url: str) -> Iterator[str]:
    name = f"cp_test_{uuid.uuid4().hex[:12]}"
    url = ensure_database(admin_database_url, name)
    for service in (*SERVICES, *MIGRATED_ONLY):
        migrations.upgrade(url, service)
    yield url
    drop_database(admin_database_url, name)


@contextmanager
def leased_redis_db(base_url: str) -> Iterator[str]:
    """A logical database no other test run on this Redis server is using, emptied for us.

    Streams and their names are shared constants, so two runs on one database would read each
    other's events; a lease key (in db 0, with an expiry in case a run dies) keeps them apart.
    """
    admin = SyncRedis.from_url(f"{base_url}/0")
    run_id = uuid.uuid4().hex
    candidates = list(range(1, 16))
    random.shuffle(candidates)
    for db in candidates:
        if admin.set(f"courseplatform:test-lease:{db}", run_id, nx=True, ex=4 * 3600):
            break
    else:
        raise RuntimeError("all 15 Redis test databases are leased by other runs")
    url = f"{base_url}/{db}"
    SyncRedis.from_url(url).flushdb()
    try:
        yield url
    finally:
        admin.delete(f"courseplatform:test-lease:{db}")
        admin.close()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if url := os.environ.get("REDIS_URL"):
        yield url
    elif tcp_port_open("127.0.0.1", 6379):
        with leased_redis_db("redis://127.0.0.1:6379") as url:
            yield url
    else:
        server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
        yield server.url(1)
        server.stop()


@pytest.fixture(scope="session")
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def settings(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    keys_dir = tmp_path_factory.mktemp("keys")
    ensure_signing_key(keys_dir)
    ports = {name: free_port() for name in ("identity", "catalog", "learning")}
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        jwt_keys_dir=keys_dir,
        mail_dir=Path(tmp_path_factory.mktemp("mail")),
        identity_port=ports["identity"],
        catalog_port=ports["catalog"],
        learning_port=ports["learning"],
        identity_target=f"127.0.0.1:{ports['identity']}",
        catalog_target=f"127.0.0.1:{ports['catalog']}",
        learning_target=f"127.0.0.1:{ports['learning']}",
        grpc_shutdown_grace_s=1.0,
        log_json=True,
        log_level="WARNING",
        outbox_poll_interval_s=0.2,
    )


def _build_server(name: str, settings: Settings) -> GrpcServer:
    module = __import__(f"services.{name}.server", fromlist=["build_server"])
    return module.build_server(settings)


@pytest.fixture(scope="session")
async def services(settings: Settings) -> AsyncIterator[dict[str, str]]:
    """Every gRPC service, started in dependency order; maps name -> target."""
    started: list[GrpcServer] = []
    targets: dict[str, str] = {}
    for name in SERVICES:
        server = _build_server(name, settings)
        port = await server.start()
        started.append(server)
        targets[name] = f"127.0.0.1:{port}"
    yield targets
    for server in reversed(started):
        await server.stop()


@asynccontextmanager
async def serve_asgi(app: Any, **options: Any) -> AsyncIterator[str]:
    """`app` under a real uvicorn server on a free loopback port (`options`: more
    uvicorn.Config arguments); yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        **options,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # raises why it could not start
                raise RuntimeError("uvicorn exited before it started")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture(scope="session")
async def gateway_url(settings: Settings, services: dict[str, str]) -> AsyncIterator[str]:
    from gateway.app import create_app
    from gateway.serving import uvicorn_options

    async with serve_asgi(create_app(settings), **uvicorn_options()) as url:
        yield url


@pytest.fixture(scope="session")
async def client(gateway_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as http:
        yield http


@dataclass
class User:
    id: int
    email: str
    full_name: str
    role: str
    access: str
    refresh: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access}"}


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


async def register_and_login(
    http: httpx.AsyncClient, role: str = "Student", full_name: str | None = None
) -> User:
    email = unique_email(role.lower())
    full_name = full_name or f"{role} {uuid.uuid4().hex[:6]}"
    body = {
        "email": email,
        "full_name": full_name,
        "role": role,
        "password": TEST_PASSWORD,
        "password_confirm": TEST_PASSWORD,
    }
    registered = await http.post("/api/register/", json=body)
    assert registered.status_code == 201, registered.text
    login = await http.post("/api/auth/login/", json={"email": email, "password": TEST_PASSWORD})
    assert login.status_code == 200, login.text
    tokens = login.json()
    return User(
        id=registered.json()["id"],
        email=email,
        full_name=full_name,
        role=role,
        access=tokens["access"],
        refresh=tokens["refresh"],
    )


@pytest.fixture
async def student(client: httpx.AsyncClient) -> User:
    return await register_and_login(client, "Student")


@pytest.fixture
async def instructor(client: httpx.AsyncClient) -> User:
    return await register_and_login(client, "Instructor")


def assert_error_body(response: httpx.Response, status: int, field: str | None = None) -> dict:
    """The contract's error shape, with `field` among the reported fields when given."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] is True
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["errors"], dict)
    if field is not None:
        assert field in body["errors"], body
        assert all(isinstance(message, str) for message in body["errors"][field])
    return body


@pytest.fixture
def catcher() -> Iterator[MailCatcher]:
    """A real SMTP server (aiosmtpd) on a free loopback port, keeping what it accepts."""
    server = MailCatcher().start()
    yield server
    server.stop()


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """A pooled engine on the suite's database, for tests that query a store directly."""
    engine = create_engine(settings, "tests")
    yield engine
    await engine.dispose()
