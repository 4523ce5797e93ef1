"""The notifier against real Redis streams, a real SMTP server (aiosmtpd) and real PostgreSQL.

Each test uses a stream of its own (the production one is covered by test_production_stream), and
filters what it checks by its own event ids and recipients.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from libs.embedded import EmbeddedRedis, free_port
from libs.settings import Settings
from libs.streams import COURSE_COMPLETED_STREAM, FIELD_EVENT, FIELD_EVENT_ID, NOTIFIER_GROUP
from services.notifier import store
from services.notifier.consumer_group import ensure_group
from services.notifier.deadletter import replay
from tests.notifier_support import (
    MailCatcher,
    TestStream,
    completion_event,
    eventually,
    fast_settings,
    handled,
    pending_ids,
    publish,
    running_notifier,
    times_delivered,
)

GROUP = NOTIFIER_GROUP


@pytest.fixture
def stream() -> TestStream:
    return TestStream()


async def notification_status(settings: Settings, event_id: str) -> str | None:
    engine = create_async_engine(settings.database_url)
    try:
        async with AsyncSession(engine) as session:
            return await store.status_of(session, event_id)
    finally:
        await engine.dispose()


async def dead_letters(redis: Redis, stream: TestStream) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in await redis.xrange(stream.dead_letters)]


async def test_completion_is_mailed_once_then_acked(
    settings: Settings, redis: Redis, catcher: MailCatcher, stream: TestStream
) -> None:
    event = completion_event()
    async with running_notifier(fast_settings(settings, catcher), stream):
        entry_id = await publish(redis, stream.name, event)
        await eventually(lambda: catcher.to(event.student_email), what="the mail")
        await eventually(
            lambda: _acked(redis, stream.name, entry_id), what="the ack after the mail"
        )

    [mail] = catcher.to(event.student_email)
    assert mail.recipients == [event.student_email]
    assert mail.message["Subject"] == f"Congratulations! You completed {event.course_title}"
    assert event.student_full_name in mail.text
    assert event.student_full_name in mail.html
    assert event.event_id in str(mail.message["Message-ID"])
    assert await notification_status(settings, event.event_id) == "sent"


async def _acked(redis: Redis, stream: str, entry_id: str) -> bool:
    return await handled(redis, stream, GROUP, entry_id)


async def test_smtp_down_when_the_event_arrives_is_retried_and_mailed_once(
    settings: Settings, redis: Redis, stream: TestStream
) -> None:
    catcher = MailCatcher()  # port chosen, server not started: connections are refused
    event = completion_event()
    config = fast_settings(settings, catcher, notifier_max_attempts=1000)
    try:
        async with running_notifier(config, stream):
            entry_id = await publish(redis, stream.name, event)
            # Delivered, failed, left pending, and redelivered by the reclaimer at least once.
            await eventually(
                lambda: _delivered_at_least(redis, stream.name, entry_id, 2),
                what="a redelivery while SMTP is down",
            )
            assert entry_id in await pending_ids(redis, stream.name, GROUP)
            assert await dead_letters(redis, stream) == []

            catcher.start()
            await eventually(lambda: catcher.to(event.student_email), what="the mail")
            await eventually(lambda: _acked(redis, stream.name, entry_id), what="the ack")
    finally:
        catcher.stop()
    assert len(catcher.to(event.student_email)) == 1
    assert await notification_status(settings, event.event_id) == "sent"


async def _delivered_at_least(redis: Redis, stream: str, entry_id: str, count: int) -> bool:
    return await times_delivered(redis, stream, GROUP, entry_id) >= count


async def test_entry_read_by_a_consumer_that_died_is_reclaimed_and_mailed_once(
    settings: Settings, redis: Redis, catcher: MailCatcher, stream: TestStream
) -> None:
    await ensure_group(redis, stream.name, GROUP)
    event = completion_event()
    entry_id = await publish(redis, stream.name, event)
    # A consumer reads the entry and dies before acking: it stays pending on that consumer.
    read = await redis.xreadgroup(GROUP, "crashed-consumer", {stream.name: ">"}, count=10)
    assert [entry.decode() for entry, _ in read[0][1]] == [entry_id]

    async with running_notifier(fast_settings(settings, catcher), stream, consumer="survivor"):
        await eventually(lambda: catcher.to(event.student_email), what="the reclaimed mail")
        await eventually(lambda: _acked(redis, stream.name, entry_id), what="the ack")

    assert len(catcher.to(event.student_email)) == 1
    consumers = {
        c["name"].decode(): c["pending"] for c in await redis.xinfo_consumers(stream.name, GROUP)
    }
    assert consumers.get("crashed-consumer", 0) == 0


async def test_malformed_entries_are_dead_lettered_and_the_next_event_still_mailed(
    settings: Settings, redis: Redis, catcher: MailCatcher, stream: TestStream
) -> None:
    good = completion_event()
    async with running_notifier(fast_settings(settings, catcher), stream):
        garbage_id = (
            await redis.xadd(
                stream.name,
                {FIELD_EVENT: b"\xff\xfe not a protobuf", FIELD_EVENT_ID: "garbage-1"},
            )
        ).decode()
        fieldless_id = (await redis.xadd(stream.name, {"hello": "world"})).decode()
        good_id = await publish(redis, stream.name, good)
        await eventually(lambda: catcher.to(good.student_email), what="the good event's mail")
        await eventually(lambda: _count_is(dead_letters(redis, stream), 2), what="two dead letters")
        for entry_id in (garbage_id, fieldless_id, good_id):
            await eventually(lambda e=entry_id: _acked(redis, stream.name, e), what="acks")

    letters = {
        letter[b"dlq_source_id"].decode(): letter for letter in await dead_letters(redis, stream)
    }
    assert set(letters) == {garbage_id, fieldless_id}
    garbage = letters[garbage_id]
    assert garbage[FIELD_EVENT.encode()] == b"\xff\xfe not a protobuf"  # kept byte for byte
    assert garbage[b"dlq_reason"].startswith(b"malformed: ")
    assert garbage[b"dlq_source_stream"].decode() == stream.name
    assert b"no 'event' field" in letters[fieldless_id][b"dlq_reason"]
    assert letters[fieldless_id][b"hello"] == b"world"
    assert len(catcher.to(good.student_email)) == 1


async def _count_is(items: object, count: int) -> bool:
    return len(await items) == count  # type: ignore[misc]


async def test_two_notifiers_share_50_events_without_duplicates(
    settings: Settings, redis: Redis, catcher: MailCatcher, stream: TestStream
) -> None:
    events = [completion_event() for _ in range(50)]
    config = fast_settings(settings, catcher)
    async with (
        running_notifier(config, stream, consumer="notifier-a"),
        running_notifier(config, stream, consumer="notifier-b"),
    ):
        for event in events:
            await publish(redis, stream.name, event)
        wanted = {event.event_id for event in events}
        await eventually(
            lambda: _mailed_ids(catcher, wanted) == wanted, what="50 mails", timeout_s=60
        )
        await eventually(
            lambda: _none_pending(redis, stream.name), what="every entry acked", timeout_s=30
        )

    for event in events:
        assert len(catcher.to(event.student_email)) == 1, event.event_id
    assert len([m for m in catcher.mails if _event_of(m) in wanted]) == 50
    consumers = {c["name"].decode() for c in await redis.xinfo_consumers(stream.name, GROUP)}
    assert {"notifier-a", "notifier-b"} <= consumers


def _event_of(mail: object) -> str:
    message_id = str(mail.message["Message-ID"]).strip()  # type: ignore[attr-defined]
    return message_id.removeprefix("<").split("@", 1)[0]


def _mailed_ids(catcher: MailCatcher, wanted: set[str]) -> set[str]:
    return {_event_of(mail) for mail in list(catcher.mails)} & wanted


async def _none_pending(redis: Redis, stream: str) -> bool:
    return not await pending_ids(redis, stream, GROUP)


async def test_redelivered_and_republished_event_sends_no_second_mail(
    settings: Settings, redis: Redis, catcher: MailCatcher, stream: TestStream
) -> None:
    event = completion_event()
    async with running_notifier(fast_settings(settings, catcher), stream):
        first = await publish(redis, stream.name, event)
        await eventually(lambda: catcher.to(event.student_email), what="the first mail")
        # The relay publishes the same event again (at-least-once), twice, as new entries.
        again = [await publish(redis, stream.name, event) for _ in range(2)]
        for entry_id in (first, *again):
            await eventually(lambda e=entry_id: _acked(redis, stream.name, e), what="acks")

    assert len(catcher.to(event.student_email)) == 1


async def test_already_mailed_entry_redelivered_after_a_lost_ack_is_only_acked(
    settings: Settings, redis: Redis, catcher: MailCatcher, stream: TestStream
) -> None:
    """The process died after the mail was recorded but before XACK: a redelivery sends nothing."""
    event = completion_event()
    config = fast_settings(settings, catcher)
    async with running_notifier(config, stream, consumer="first-life"):
        entry_id = await publish(redis, stream.name, event)
        await eventually(lambda: catcher.to(event.student_email), what="the mail")
        await eventually(lambda: _acked(redis, stream.name, entry_id), what="the ack")

    # Make the entry pending again, as if the XACK had never reached Redis.
    await redis.xgroup_setid(stream.name, GROUP, id="0")
    assert not await _acked(redis, stream.name, entry_id)
    async with running_notifier(config, stream, consumer="second-life"):
        await eventually(lambda: _acked(redis, stream.name, entry_id), what="redelivery + ack")

    assert len(catcher.to(event.student_email)) == 1


async def test_recipient_refused_is_dead_lettered_without_retries_and_replayable(
    settings: Settings, redis: Redis, catcher: MailCatcher, stream: TestStream
) -> None:
    event = completion_event()
    catcher.refuse[event.student_email] = "550 5.1.1 No such user"
    config = fast_settings(settings, catcher)
    async with running_notifier(config, stream):
        entry_id = await publish(redis, stream.name, event)
        await eventually(lambda: _count_is(dead_letters(redis, stream), 1), what="dead letter")
        await eventually(lambda: _acked(redis, stream.name, entry_id), what="the ack")
        [letter] = await dead_letters(redis, stream)
        assert letter[b"dlq_reason"].startswith(b"refused: ")
        assert b"550" in letter[b"dlq_reason"]
        assert letter[FIELD_EVENT_ID.encode()].decode() == event.event_id
        assert await notification_status(settings, event.event_id) == "failed"

        # The address is fixed; the operator replays the dead letter and the mail goes out.
        del catcher.refuse[event.student_email]
        await replay(
            redis,
            dead_letter_stream=stream.dead_letters,
            target_stream=stream.name,
            maxlen=1000,
        )
        await eventually(lambda: catcher.to(event.student_email), what="the replayed mail")
        await eventually(lambda: _none_pending(redis, stream.name), what="the ack")

    assert len(catcher.to(event.student_email)) == 1
    assert await dead_letters(redis, stream) == []
    assert await notification_status(settings, event.event_id) == "sent"


async def test_lasting_transient_refusal_is_dead_lettered_after_max_attempts(
    settings: Settings, redis: Redis, catcher: MailCatcher, stream: TestStream
) -> None:
    event = completion_event()
    catcher.refuse[event.student_email] = "451 4.3.0 Try again later"
    config = fast_settings(settings, catcher, notifier_max_attempts=3)
    async with running_notifier(config, stream):
        entry_id = await publish(redis, stream.name, event)
        await eventually(lambda: _count_is(dead_letters(redis, stream), 1), what="dead letter")
        await eventually(lambda: _acked(redis, stream.name, entry_id), what="the ack")

    [letter] = await dead_letters(redis, stream)
    assert letter[b"dlq_reason"].startswith(b"gave up after 3 attempts: ")
    assert b"451" in letter[b"dlq_reason"]
    assert int(letter[b"dlq_deliveries"]) >= 3
    assert catcher.to(event.student_email) == []


async def test_shutdown_lets_the_mail_in_flight_finish(
    settings: Settings, redis: Redis, stream: TestStream
) -> None:
    catcher = MailCatcher(data_delay_s=1.0).start()
    event = completion_event()
    try:
        async with running_notifier(fast_settings(settings, catcher), stream):
            entry_id = await publish(redis, stream.name, event)
            await eventually(catcher.data_started.is_set, what="the mail to be in flight")
        # Leaving the block stopped the notifier while DATA was still being answered.
        assert len(catcher.to(event.student_email)) == 1
        assert await _acked(redis, stream.name, entry_id)
        assert await notification_status(settings, event.event_id) == "sent"
    finally:
        catcher.stop()


async def test_consumer_survives_its_stream_and_group_being_deleted(
    settings: Settings, redis: Redis, catcher: MailCatcher, stream: TestStream
) -> None:
    """FastStream stops a subscriber whose group vanished (NOGROUP); the notifier restarts it."""
    before, after = completion_event(), completion_event()
    async with running_notifier(fast_settings(settings, catcher), stream) as notifier:
        await publish(redis, stream.name, before)
        await eventually(lambda: catcher.to(before.student_email), what="the first mail")

        await redis.delete(stream.name)  # e.g. Redis restarted without its data
        entry_id = await publish(redis, stream.name, after)
        await eventually(lambda: catcher.to(after.student_email), what="the mail after")
        await eventually(lambda: _acked(redis, stream.name, entry_id), what="the ack")
        assert notifier.subscribers_running
    assert len(catcher.to(after.student_email)) == 1


async def test_consumer_rides_out_a_redis_outage(
    settings: Settings, catcher: MailCatcher, stream: TestStream, tmp_path: Path
) -> None:
    """Redis goes away under a running notifier and comes back: consuming resumes by itself."""
    port = free_port()
    server = EmbeddedRedis(tmp_path / "redis", port=port)
    config = fast_settings(settings, catcher, redis_url=server.url())
    before, after = completion_event(), completion_event()
    try:
        async with running_notifier(config, stream) as notifier:
            client = Redis.from_url(server.url())
            await publish(client, stream.name, before)
            await eventually(lambda: catcher.to(before.student_email), what="the first mail")
            await client.aclose()

            server.stop()
            await asyncio.sleep(1)  # let the subscribers hit the outage
            server = EmbeddedRedis(tmp_path / "redis", port=port)

            client = Redis.from_url(server.url())
            entry_id = await publish(client, stream.name, after)
            await eventually(lambda: catcher.to(after.student_email), what="the mail after")
            await eventually(lambda: _acked(client, stream.name, entry_id), what="the ack")
            assert notifier.subscribers_running
            await client.aclose()
    finally:
        server.stop()
    assert len(catcher.to(after.student_email)) == 1
    assert len(catcher.to(before.student_email)) == 1


async def test_production_stream_end_to_end(
    settings: Settings, redis: Redis, catcher: MailCatcher
) -> None:
    """The real stream, dead-letter and group names of libs/streams.py, as the relay uses them."""
    event = completion_event()
    async with running_notifier(fast_settings(settings, catcher)) as notifier:
        assert notifier.binding.stream == COURSE_COMPLETED_STREAM
        entry_id = await publish(redis, COURSE_COMPLETED_STREAM, event)
        await eventually(lambda: catcher.to(event.student_email), what="the mail")
        await eventually(lambda: _acked(redis, COURSE_COMPLETED_STREAM, entry_id), what="ack")
    [mail] = catcher.to(event.student_email)
    assert mail.message["Subject"] == f"Congratulations! You completed {event.course_title}"
