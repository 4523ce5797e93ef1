"""Who may send an event, and when: a live sender keeps its claim, an accepted mail is recorded
through a PostgreSQL outage and never sent again by the same process.

Real Redis, real aiosmtpd, real PostgreSQL (for the outages a private embedded one that the test
stops and starts). Times are scaled down by settings; test_notifier_mail.py checks the defaults'
arithmetic and test_notifier_kills.py the defaults themselves against killed processes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from libs import migrations
from libs.settings import Settings
from libs.streams import NOTIFIER_GROUP
from services.notifier import store
from tests.notifier_support import (
    MailCatcher,
    TestStream,
    completion_event,
    eventually,
    fast_settings,
    handled,
    publish,
    running_notifier,
)
from tests.postgres_support import RestartablePostgres


@pytest.fixture
def private_postgres() -> Iterator[RestartablePostgres]:
    server = RestartablePostgres()
    migrations.upgrade(server.url, "notifier")
    yield server
    server.stop()


async def status_in(database_url: str, event_id: str) -> str | None:
    engine = create_async_engine(Settings(database_url=database_url).database_url)
    try:
        async with AsyncSession(engine) as session:
            return await store.status_of(session, event_id)
    finally:
        await engine.dispose()


async def test_a_slow_live_sender_keeps_its_claim_and_nobody_else_sends(
    settings: Settings, redis: Redis, catcher: MailCatcher
) -> None:
    """DATA answered after 3 s: three leases (1 s) and ten reclaim idle times (0.3 s) pass while
    the first notifier is still sending. Its heartbeat keeps both the claim and the entry's idle
    time fresh, so the second notifier never starts a second transaction."""
    stream = TestStream()
    config = fast_settings(settings, catcher, smtp_timeout_s=10.0)
    event = completion_event()
    in_data = catcher.hold_next("DATA", 3.0)
    async with running_notifier(config, stream), running_notifier(config, stream):
        entry_id = await publish(redis, stream.name, event)
        await eventually(in_data.is_set, what="the first transaction to reach DATA")
        await eventually(lambda: catcher.to(event.student_email), what="the mail")
        await eventually(lambda: handled(redis, stream.name, NOTIFIER_GROUP, entry_id), what="ack")
        await asyncio.sleep(1.0)  # a second sender would have started by now
    assert catcher.data_count == 1
    assert len(catcher.to(event.student_email)) == 1
    assert await status_in(settings.database_url, event.event_id) == "sent"


async def test_postgres_down_right_after_smtp_accepted_is_ridden_out_and_mailed_once(
    settings: Settings,
    redis: Redis,
    catcher: MailCatcher,
    private_postgres: RestartablePostgres,
) -> None:
    """The server stops PostgreSQL just before it answers 250 to DATA and it stays down 4 s,
    longer than the claim's lease. The sender keeps retrying the record (and keeps the entry
    its own in Redis), so the second notifier never takes the entry over."""
    stream = TestStream()
    config = fast_settings(settings, catcher, database_url=private_postgres.url)
    event = completion_event()
    stopped = threading.Event()

    def stop_postgres_once() -> None:
        if not stopped.is_set():
            private_postgres.stop()
            stopped.set()

    catcher.on_accept = stop_postgres_once
    async with running_notifier(config, stream), running_notifier(config, stream):
        entry_id = await publish(redis, stream.name, event)
        await eventually(stopped.is_set, what="PostgreSQL stopped at the acceptance")
        await asyncio.sleep(4.0)
        await asyncio.to_thread(private_postgres.start)
        await eventually(
            lambda: handled(redis, stream.name, NOTIFIER_GROUP, entry_id),
            timeout_s=30,
            what="the ack once the record is written",
        )
        await asyncio.sleep(1.0)  # room for a wrong second send
    assert len(catcher.to(event.student_email)) == 1
    assert catcher.data_count == 1
    assert await status_in(private_postgres.url, event.event_id) == "sent"


async def test_an_accepted_mail_whose_record_failed_is_never_resent_by_this_process(
    settings: Settings,
    redis: Redis,
    catcher: MailCatcher,
    private_postgres: RestartablePostgres,
) -> None:
    """PostgreSQL stays down longer than the record's retry budget (0.5 s): the handler gives
    up, the entry stays pending and comes back to the same notifier, which remembers that SMTP
    accepted it and only retries the record, until PostgreSQL is back."""
    stream = TestStream()
    config = fast_settings(
        settings,
        catcher,
        database_url=private_postgres.url,
        notifier_record_sent_retry_s=0.5,
    )
    event = completion_event()
    stopped = threading.Event()

    def stop_postgres_once() -> None:
        if not stopped.is_set():
            private_postgres.stop()
            stopped.set()

    catcher.on_accept = stop_postgres_once
    async with running_notifier(config, stream):
        entry_id = await publish(redis, stream.name, event)
        await eventually(stopped.is_set, what="PostgreSQL stopped at the acceptance")
        await asyncio.sleep(4.0)  # several give-ups and redeliveries meanwhile
        await asyncio.to_thread(private_postgres.start)
        await eventually(
            lambda: handled(redis, stream.name, NOTIFIER_GROUP, entry_id),
            timeout_s=30,
            what="the ack once the record is written",
        )
        await asyncio.sleep(1.0)
    assert len(catcher.to(event.student_email)) == 1
    assert catcher.data_count == 1
    assert await status_in(private_postgres.url, event.event_id) == "sent"
