"""The platform as several replicas on one machine, every one a real process on a loopback port:
identity x1, catalog x2, learning x2, gateway x2, notifier x2, with clients given both replicas of
a service as one `ipv4:` target. It runs on a database and Redis logical database of its own.

The tests run in order on one platform:
1. a short load through both gateways reaches both replicas of catalog and of learning;
2. concurrent completions through both learning replicas (two outbox relays) are published to
   the stream once each and mailed once each by the two notifiers (one consumer group);
3. a notifier SIGKILLed while it holds a mail in flight: every completion is mailed, once;
4. SIGTERM of a catalog and a learning replica under load: every request answered 200/201,
   the replicas reported NOT_SERVING before they went, the others took the calls;
5. SIGKILL of (restarted) replicas under load: no 500; the few failures are 503.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from redis.asyncio import Redis

from libs import migrations, streams
from libs.embedded import drop_database, ensure_database
from libs.grpc_client import MAX_RECONNECT_BACKOFF_MS
from libs.settings import Settings, to_libpq_url
from tests.conftest import MIGRATED_ONLY, SERVICES, User, leased_redis_db, register_and_login
from tests.learning_support import Course, enroll, progress_rows, published_course, query
from tests.notifier_support import eventually
from tests.process_support import (
    PlatformProcess,
    gateway,
    grpc_service,
    ipv4_target,
    notifier,
)
from tests.scaleout_support import Answer, HoldingMailCatcher, Load

CONCURRENCY = 8
# Seconds: SIGTERM'd gRPC servers drain this long at most (clients watching health keep a
# stream open until then); the notifier reclaims a dead consumer's mail after the idle time.
GRACE_S = 3
RECLAIM_IDLE_MS = 2000
SMTP_TIMEOUT_S = 2


@dataclass
class Platform:
    settings: Settings
    redis: Redis
    catcher: HoldingMailCatcher
    identity: PlatformProcess
    catalogs: list[PlatformProcess]
    learnings: list[PlatformProcess]
    gateways: list[PlatformProcess]
    notifiers: list[PlatformProcess]
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def processes(self) -> list[PlatformProcess]:
        return [
            self.identity,
            *self.catalogs,
            *self.learnings,
            *self.gateways,
            *self.notifiers,
        ]


@dataclass
class World:
    """What the tests work on, made through the REST API before any test runs."""

    instructor: User
    students: list[User]
    courses: list[Course]
    # (student, progress id of the one lesson) pairs, consumed by the completion tests.
    completions: list[tuple[User, int]]
    # (student, course id) pairs not enrolled yet, shared by every load (each enrolls once).
    enrollments_to_make: Iterator[tuple[User, int]]


@pytest.fixture(scope="module")
async def isolated(
    admin_database_url: str, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Settings]:
    """The suite's settings on a database and Redis logical database of this module's own: its
    relays and notifiers then see only its outbox rows and stream entries."""
    name = f"cp_scaleout_{uuid.uuid4().hex[:10]}"
    url = ensure_database(admin_database_url, name)
    for service in (*SERVICES, *MIGRATED_ONLY):
        await asyncio.to_thread(migrations.upgrade, url, service)
    base = settings.redis_url.rsplit("/", 1)[0]
    try:
        with leased_redis_db(base) as redis_url:
            yield settings.model_copy(
                update={
                    "database_url": Settings(database_url=url).database_url,
                    "redis_url": redis_url,
                    "mail_dir": tmp_path_factory.mktemp("scaleout-mail"),
                }
            )
    finally:
        drop_database(admin_database_url, name)


@pytest.fixture(scope="module")
async def platform(
    isolated: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    logs = tmp_path_factory.mktemp("scaleout-logs")
    catcher = HoldingMailCatcher().start()
    common: dict[str, Any] = {"grpc_shutdown_grace_s": GRACE_S, "outbox_poll_interval_s": 0.2}
    identity = grpc_service("identity", isolated, logs, **common)
    catalogs = [grpc_service("catalog", isolated, logs, **common) for _ in range(2)]
    targets = {
        "identity_target": identity.address,
        "catalog_target": ipv4_target(*catalogs),
    }
    learnings = [grpc_service("learning", isolated, logs, **common, **targets) for _ in range(2)]
    targets["learning_target"] = ipv4_target(*learnings)
    gateways = [gateway(isolated, logs, **common, **targets) for _ in range(2)]
    notifiers = [
        notifier(
            isolated,
            logs,
            smtp_host="127.0.0.1",
            smtp_port=catcher.port,
            smtp_timeout_s=SMTP_TIMEOUT_S,
            notifier_reclaim_idle_ms=RECLAIM_IDLE_MS,
            notifier_retries_per_delivery=0,
            notifier_retry_backoff_s=0.1,
            notifier_max_attempts=20,
            notifier_shutdown_grace_s=5,
        )
        for _ in range(2)
    ]
    redis = Redis.from_url(isolated.redis_url)
    running = Platform(isolated, redis, catcher, identity, catalogs, learnings, gateways, notifiers)
    try:
        for process in running.processes:
            await process.start()
        await asyncio.gather(*(process.wait_ready(90) for process in running.processes))
        running.clients = [
            httpx.AsyncClient(base_url=process.url, timeout=30) for process in gateways
        ]
        yield running
    finally:
        for client in running.clients:
            await client.aclose()
        await asyncio.gather(*(process.stop() for process in running.processes))
        await redis.aclose()
        catcher.stop()


@pytest.fixture(scope="module")
async def world(platform: Platform) -> World:
    http = platform.clients[0]
    instructor = await register_and_login(http, "Instructor")
    courses = [await published_course(http, instructor, lessons=1) for _ in range(24)]
    finale = await published_course(http, instructor, lessons=1)
    limit = asyncio.Semaphore(4)

    async def student(index: int) -> User:
        async with limit:
            return await register_and_login(platform.clients[index % 2], "Student")

    students = list(await asyncio.gather(*(student(i) for i in range(8))))
    completers = list(await asyncio.gather(*(student(i) for i in range(32))))

    async def ready_to_complete(user: User) -> tuple[User, int]:
        async with limit:
            enrollment = await enroll(http, user, finale.id)
            rows = await progress_rows(http, user, enrollment["id"])
            return user, rows[0]["id"]

    completions = list(await asyncio.gather(*(ready_to_complete(user) for user in completers)))
    pairs = [(user, course.id) for course in courses for user in students]
    return World(instructor, students, courses, completions, iter(pairs))


def rest_load(platform: Platform, world: World) -> Load:
    """Reads and writes of both catalog and learning, as students and the instructor do them."""
    turn = iter(range(1_000_000))
    to_enroll = world.enrollments_to_make

    def someone() -> User:
        return world.students[next(turn) % len(world.students)]

    async def read_course(http: httpx.AsyncClient) -> httpx.Response:  # catalog GetCourse
        course = world.courses[next(turn) % len(world.courses)]
        return await http.get(f"/api/courses/{course.id}/", headers=someone().headers)

    async def list_enrollments(http: httpx.AsyncClient) -> httpx.Response:  # learning (+catalog)
        return await http.get("/api/enrollments/", headers=someone().headers)

    async def create_course(http: httpx.AsyncClient) -> httpx.Response:  # catalog write
        body = {"title": f"Load {uuid.uuid4().hex[:8]}", "short_description": "Load."}
        return await http.post("/api/courses/", json=body, headers=world.instructor.headers)

    async def enroll_once(http: httpx.AsyncClient) -> httpx.Response:  # learning write
        pair = next(to_enroll, None)
        if pair is None:  # every pair is used: read instead
            return await list_enrollments(http)
        user, course_id = pair
        return await http.post(
            "/api/enrollments/", json={"course": course_id}, headers=user.headers
        )

    return Load(
        platform.clients,
        {
            "read_course": read_course,
            "list_enrollments": list_enrollments,
            "create_course": create_course,
            "enroll": enroll_once,
        },
        concurrency=CONCURRENCY,
    )


def calls(processes: list[PlatformProcess]) -> list[int]:
    return [process.rpc_calls() for process in processes]


def unexpected(answers: list[Answer], allowed: set[int]) -> list[Answer]:
    return [answer for answer in answers if answer.status not in allowed]


async def complete_all(platform: Platform, pairs: list[tuple[User, int]]) -> None:
    """Each student completes their last lesson, all at once, half through each gateway."""

    async def complete(index: int, user: User, progress_id: int) -> None:
        http = platform.clients[index % 2]
        done = await http.post(f"/api/progress/{progress_id}/complete/", headers=user.headers)
        assert done.status_code == 200, done.text

    await asyncio.gather(*(complete(i, user, pid) for i, (user, pid) in enumerate(pairs)))


async def stream_event_ids(redis: Redis) -> list[str]:
    entries = await redis.xrange(streams.COURSE_COMPLETED_STREAM, "-", "+")
    return [fields[streams.FIELD_EVENT_ID.encode()].decode() for _, fields in entries]


def mails_to(platform: Platform, users: list[User]) -> dict[str, list[Any]]:
    return {user.email: platform.catcher.to(user.email) for user in users}


async def all_acked(redis: Redis) -> bool:
    summary = await redis.xpending(streams.COURSE_COMPLETED_STREAM, streams.NOTIFIER_GROUP)
    return summary["pending"] == 0


def assert_mailed_once_each(platform: Platform, users: list[User]) -> None:
    mails = mails_to(platform, users)
    counts = {email: len(found) for email, found in mails.items()}
    assert set(counts.values()) == {1}, f"mails per student (duplicates or losses): {counts}"
    message_ids = [found[0].message["Message-ID"] for found in mails.values()]
    assert len(set(message_ids)) == len(users)


def sent_by(process: PlatformProcess) -> int:
    return sum(1 for e in process.log_events() if e.get("event") == "course-completed mail sent")


async def test_a_short_load_reaches_both_replicas_of_catalog_and_learning(
    platform: Platform, world: World
) -> None:
    catalog_before, learning_before = calls(platform.catalogs), calls(platform.learnings)
    load = rest_load(platform, world).start(count=240)
    answers = await load.finish()
    assert len(answers) == 240
    assert not unexpected(answers, {200, 201}), unexpected(answers, {200, 201})[:5]
    catalog = [a - b for a, b in zip(calls(platform.catalogs), catalog_before, strict=True)]
    learning = [a - b for a, b in zip(calls(platform.learnings), learning_before, strict=True)]
    print(f"rpc calls per replica under 240 requests: catalog {catalog}, learning {learning}")
    # round_robin: each replica gets a fair share (pick_first would leave one at 0).
    assert min(catalog) >= sum(catalog) / 4, catalog
    assert min(learning) >= sum(learning) / 4, learning
    # Both gateways answered too.
    assert Counter(answer.gateway for answer in answers) == Counter({0: 120, 1: 120})


async def test_completions_through_two_relays_are_published_and_mailed_once_each(
    platform: Platform, world: World
) -> None:
    pairs = world.completions[:20]
    users = [user for user, _ in pairs]
    await complete_all(platform, pairs)
    rows = await query(
        to_libpq_url(platform.settings.database_url),
        "SELECT event_id, published_at FROM learning.outbox",
    )
    assert len(rows) == 20

    async def all_published() -> bool:
        published = await query(
            to_libpq_url(platform.settings.database_url),
            "SELECT count(*) AS n FROM learning.outbox WHERE published_at IS NOT NULL",
        )
        return published[0]["n"] == 20

    await eventually(all_published, timeout_s=30, what="both relays to publish every row")
    ids = await stream_event_ids(platform.redis)
    assert sorted(ids) == sorted(str(row["event_id"]) for row in rows)  # each once, none lost
    await eventually(
        lambda: all(mails_to(platform, users).values()), timeout_s=30, what="every mail"
    )
    await eventually(lambda: all_acked(platform.redis), timeout_s=30, what="every ack")
    assert_mailed_once_each(platform, users)
    relayed = [
        sum(e.get("count", 0) for e in p.log_events() if e.get("event") == "outbox published")
        for p in platform.learnings
    ]
    mailed = [sent_by(process) for process in platform.notifiers]
    print(f"outbox rows published per learning replica {relayed}, mails per notifier {mailed}")
    assert sum(relayed) == 20
    assert sum(mailed) == 20
    consumers = await platform.redis.xinfo_consumers(
        streams.COURSE_COMPLETED_STREAM, streams.NOTIFIER_GROUP
    )
    names = {consumer["name"].decode() for consumer in consumers}
    assert {p.env["NOTIFIER_CONSUMER"] for p in platform.notifiers} <= names  # one group


async def test_completions_while_a_notifier_is_killed_are_each_mailed_once(
    platform: Platform, world: World
) -> None:
    pairs = world.completions[20:]
    users = [user for user, _ in pairs]
    victim, survivor = platform.notifiers
    victim_name = victim.env["NOTIFIER_CONSUMER"]
    platform.catcher.hold()  # both notifiers will stop in RCPT TO, before any acceptance
    try:
        await complete_all(platform, pairs)

        async def both_holding() -> bool:
            summary = await platform.redis.xpending(
                streams.COURSE_COMPLETED_STREAM, streams.NOTIFIER_GROUP
            )
            owners = {c["name"].decode() for c in summary["consumers"] if int(c["pending"])}
            return platform.catcher.held >= 2 and victim_name in owners

        await eventually(both_holding, timeout_s=30, what="both notifiers to hold a mail")
        held = await platform.redis.xpending_range(
            streams.COURSE_COMPLETED_STREAM,
            streams.NOTIFIER_GROUP,
            min="-",
            max="+",
            count=100,
            consumername=victim_name,
        )
        victim.send(signal.SIGKILL)
        assert await victim.wait(10) == -signal.SIGKILL
    finally:
        platform.catcher.release()
    assert held, "the killed notifier held no entry"
    await eventually(
        lambda: all(mails_to(platform, users).values()),
        timeout_s=60,
        what="every mail, the killed notifier's reclaimed by the survivor",
    )
    await eventually(lambda: all_acked(platform.redis), timeout_s=30, what="every ack")
    assert_mailed_once_each(platform, users)
    # The entry the victim held was mailed by the survivor (reclaimed after the idle time).
    held_ids = [entry["message_id"].decode() for entry in held]
    entries = {
        entry_id.decode(): fields
        for entry_id, fields in await platform.redis.xrange(streams.COURSE_COMPLETED_STREAM)
    }
    held_events = {entries[i][streams.FIELD_EVENT_ID.encode()].decode() for i in held_ids}
    survivor_sent = {
        e.get("event_id")
        for e in survivor.log_events()
        if e.get("event") == "course-completed mail sent"
    }
    assert held_events <= survivor_sent
    # Start a fresh notifier in its place for the rest of the module (same consumer name).
    platform.notifiers[0] = await PlatformProcess(
        victim.name, victim.module, victim.env, victim.log_path, "http", victim.port, "/health"
    ).start()
    await platform.notifiers[0].wait_ready(60)


async def watch_health(address: str, seen: list[str]) -> None:
    """Record the statuses a replica's grpc.health.v1 Watch stream sends, until it ends."""
    async with grpc.aio.insecure_channel(address) as channel:
        stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        try:
            async for reply in stream:
                seen.append(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
        except grpc.aio.AioRpcError as error:
            seen.append(f"ended:{error.code().name}")


async def test_sigterm_of_a_catalog_and_a_learning_replica_loses_no_request(
    platform: Platform, world: World
) -> None:
    stopping = [platform.catalogs[1], platform.learnings[1]]
    staying = [platform.catalogs[0], platform.learnings[0]]
    watched: list[list[str]] = [[], []]
    watchers = [
        asyncio.create_task(watch_health(p.address, seen))
        for p, seen in zip(stopping, watched, strict=True)
    ]
    before = calls(stopping)
    load = rest_load(platform, world).start()
    try:
        await load.wait_answers(80)
        assert all(a > b for a, b in zip(calls(stopping), before, strict=True)), "not in rotation"
        for process in stopping:
            process.send(signal.SIGTERM)
        await asyncio.sleep(0.2)
        staying_at_kill = calls(staying)
        exits = await asyncio.gather(*(process.wait(GRACE_S + 20) for process in stopping))
        at_exit = len(load.answers)
        await load.wait_answers(at_exit + 80)
    finally:
        answers = await load.stop()
    await asyncio.gather(*watchers)
    print(f"SIGTERM under load: {len(answers)} requests, statuses {dict(load.statuses())}")
    assert not unexpected(answers, {200, 201}), unexpected(answers, {200, 201})[:5]
    assert exits == [0, 0], [p.output[-2000:] for p in stopping]
    for seen in watched:  # readiness went NOT_SERVING before the server went away
        assert seen[0] == "SERVING" and "NOT_SERVING" in seen, seen
    for process in stopping:
        logged = [e.get("event") for e in process.log_events()]
        assert logged.index("shutting down") < logged.index("stopped")
    # The remaining replicas took the calls after the others had stopped.
    assert all(a > b for a, b in zip(calls(staying), staying_at_kill, strict=True))


async def test_sigkill_of_replicas_fails_only_calls_in_flight_and_as_503(
    platform: Platform, world: World
) -> None:
    # Bring the SIGTERM'd replicas back on their addresses; clients reconnect to them.
    for index, group in ((1, platform.catalogs), (1, platform.learnings)):
        old = group[index]
        group[index] = await PlatformProcess(
            old.name, old.module, old.env, old.log_path, "grpc", old.port
        ).start()
    victims = [platform.catalogs[1], platform.learnings[1]]
    await asyncio.gather(*(process.wait_ready(60) for process in victims))
    # Every channel (each gateway's, each learning's) reconnects within its capped reconnect
    # backoff (5 s, +20% jitter): until then some of them still use only the other replica.
    rejoined_by = asyncio.get_running_loop().time() + MAX_RECONNECT_BACKOFF_MS / 1000 * 1.2
    # The log files hold the earlier processes' lines too.
    before = [*calls(victims), victims[0].rpc_calls("CreateCourse")]
    load = rest_load(platform, world).start()
    try:

        async def back_in_rotation() -> bool:
            now = [*calls(victims), victims[0].rpc_calls("CreateCourse")]
            return all(a > b for a, b in zip(now, before, strict=True))

        await eventually(back_in_rotation, timeout_s=30, what="the restarted replicas' calls")
        await asyncio.sleep(max(0.0, rejoined_by - asyncio.get_running_loop().time()))
        # Make sure writes are in flight on the victim at the kill: block course inserts (reads
        # go on) until several CreateCourse calls wait, on both catalog replicas (round robin).
        async with await psycopg.AsyncConnection.connect(
            to_libpq_url(platform.settings.database_url)
        ) as blocker:
            await blocker.execute("LOCK TABLE catalog.courses IN SHARE ROW EXCLUSIVE MODE")
            blocked = await waiting_on(blocker, "catalog.courses", at_least=6, within_s=2.5)
            for process in victims:
                process.send(signal.SIGKILL)
            at_kill = len(load.answers)
            exits = await asyncio.gather(*(process.wait(10) for process in victims))
            await blocker.rollback()  # well inside the calls' 5 s deadline
        await load.wait_answers(at_kill + 120)
    finally:
        answers = await load.stop()
    statuses = load.statuses()
    print(
        f"SIGKILL under load: {len(answers)} requests, {blocked} course writes in flight at the"
        f" kill, statuses {dict(statuses)}"
    )
    assert exits == [-signal.SIGKILL, -signal.SIGKILL]
    assert statuses[500] == 0, unexpected(answers, {200, 201, 503})[:5]
    assert not unexpected(answers, {200, 201, 503}), unexpected(answers, {200, 201, 503})[:5]
    # Only calls in flight on the killed replicas may fail: at most one per worker and victim.
    assert statuses[503] <= CONCURRENCY * len(victims), statuses
    failed = [answer for answer in answers if answer.status == 503]
    assert all(answer.kind in ("create_course", "enroll") for answer in failed), failed
    # Load kept flowing after the kill, all of it on the surviving replicas.
    assert len(answers) - at_kill >= 120
    # The writes waiting on the killed catalog failed, as 503 (the others went through).
    assert statuses[503] >= 1, statuses


async def waiting_on(
    connection: psycopg.AsyncConnection, table: str, at_least: int, within_s: float
) -> int:
    """How many backends wait for a lock on `table`: polled until `at_least`, or `within_s`."""
    deadline = asyncio.get_running_loop().time() + within_s
    async with await psycopg.AsyncConnection.connect(
        connection.info.dsn, autocommit=True
    ) as observer:
        while True:
            cursor = await observer.execute(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass",
                (table,),
            )
            row = await cursor.fetchone()
            waiting = int(row[0]) if row else 0
            if waiting >= at_least or asyncio.get_running_loop().time() > deadline:
                return waiting
            await asyncio.sleep(0.02)
