"""Fast checks of the FastStream wiring with the in-memory TestRedisBroker: subscriptions,
routing into the handler, decoding of raw entries, and the AsyncAPI document.

The broker is in memory here, so nothing about pending entries, acks or reclaiming is proven in
this file (test_notifier_delivery.py does that against real Redis). Side effects the handler has
(PostgreSQL record, dead-letter stream, .eml file) still happen for real.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from faststream import AckPolicy, TestApp
from faststream.redis import BinaryMessageFormatV1, TestRedisBroker
from faststream.redis.message import DefaultStreamMessage
from redis.asyncio import Redis

from libs.settings import Settings
from libs.streams import (
    COURSE_COMPLETED_DLQ,
    COURSE_COMPLETED_STREAM,
    NOTIFIER_GROUP,
    PASSWORD_RESET_DLQ,
    PASSWORD_RESET_STREAM,
)
from services.notifier.app import NotifierApp
from services.notifier.asyncapi import document
from tests.notifier_support import TestStream, completion_event, fast_settings, stream_entry


@pytest.fixture
def file_settings(settings: Settings, tmp_path: Path) -> Settings:
    return fast_settings(settings, mail_dir=tmp_path / "mail")


def raw_entry(stream: str, entry_id: bytes, fields: dict[bytes, bytes]) -> DefaultStreamMessage:
    return DefaultStreamMessage(type="stream", channel=stream, data=fields, message_ids=[entry_id])


def test_subscribers_read_and_reclaim_the_stream_with_manual_acks(settings: Settings) -> None:
    notifier = NotifierApp(
        fast_settings(settings, notifier_reclaim_idle_ms=1234), consumer="host-1"
    )
    reader, reclaimer = notifier.reader.stream_sub, notifier.reclaimer.stream_sub
    for sub in (reader, reclaimer):
        assert sub.name == COURSE_COMPLETED_STREAM
        assert sub.group == NOTIFIER_GROUP
        assert sub.consumer == "host-1"
        assert sub.no_ack is False
    assert reader.min_idle_time is None
    assert reader.last_id == ">"
    assert reclaimer.min_idle_time == 1234
    assert notifier.reader.ack_policy is AckPolicy.MANUAL
    assert notifier.reclaimer.ack_policy is AckPolicy.MANUAL
    assert notifier.binding.dead_letter_stream == COURSE_COMPLETED_DLQ


def test_consumer_name_is_per_process_unless_configured(settings: Settings) -> None:
    first, second = NotifierApp(settings), NotifierApp(settings)
    assert first.consumer == second.consumer  # one process, one name
    assert first.consumer.rsplit("-", 1)[1].isdigit()  # <hostname>-<pid>
    configured = NotifierApp(settings.model_copy(update={"notifier_consumer": "notifier-0"}))
    assert configured.consumer == "notifier-0"


async def test_raw_binary_entry_is_decoded_and_mailed(
    file_settings: Settings, redis: Redis
) -> None:
    stream = TestStream()
    notifier = NotifierApp(
        file_settings, stream=stream.name, dead_letter_stream=stream.dead_letters
    )
    event = completion_event()
    fields = {
        key.encode(): value if isinstance(value, bytes) else value.encode()
        for key, value in stream_entry(event).items()
    }
    async with TestRedisBroker(notifier.broker), TestApp(notifier.app):
        await notifier.reader.process_message(raw_entry(stream.name, b"1-1", fields))

    mail = file_settings.mail_dir / f"course-completed-{event.event_id}.eml"
    content = mail.read_text()
    assert f"Subject: Congratulations! You completed {event.course_title}" in content
    assert event.student_email in content
    assert await redis.xlen(stream.dead_letters) == 0


async def test_entry_in_faststream_envelope_is_dead_lettered_not_retried(
    file_settings: Settings, redis: Redis
) -> None:
    """A FastStream publisher wraps bodies in its own `__data__` envelope: not our encoding."""
    stream = TestStream()
    notifier = NotifierApp(
        file_settings, stream=stream.name, dead_letter_stream=stream.dead_letters
    )
    envelope = await BinaryMessageFormatV1.encode(
        message={"hello": "world"}, reply_to=None, headers=None, correlation_id="c-1"
    )
    fields = {b"__data__": envelope}
    async with TestRedisBroker(notifier.broker), TestApp(notifier.app):
        entry_id = await redis.xadd(stream.name, fields)  # type: ignore[arg-type]
        await notifier.reader.process_message(raw_entry(stream.name, entry_id, fields))

    [(_, letter)] = await redis.xrange(stream.dead_letters)
    assert letter[b"dlq_reason"] == b"malformed: entry has no 'event' field"
    assert letter[b"dlq_source_id"] == entry_id
    assert letter[b"__data__"] == envelope
    assert not list(file_settings.mail_dir.glob("*.eml"))


def test_asyncapi_documents_the_stream_entry_and_the_dead_letter_stream(
    settings: Settings,
) -> None:
    spec = document(settings)
    assert spec["asyncapi"].startswith("3.")
    channels = spec["channels"]
    assert set(channels) == {
        COURSE_COMPLETED_STREAM,
        COURSE_COMPLETED_DLQ,
        PASSWORD_RESET_STREAM,
        PASSWORD_RESET_DLQ,
    }
    binding = channels[COURSE_COMPLETED_STREAM]["bindings"]["redis"]
    assert binding["groupName"] == NOTIFIER_GROUP
    schemas = spec["components"]["schemas"]
    entry = schemas["CourseCompletedEntry"]["properties"]
    assert entry["event"]["format"] == "binary"
    assert "CourseCompleted" in entry["event"]["description"]
    assert "dlq_reason" in schemas["DeadLetterEntry"]["properties"]
    reset = schemas["PasswordResetEntry"]["properties"]
    assert "PasswordResetRequested" in reset["event"]["description"]
