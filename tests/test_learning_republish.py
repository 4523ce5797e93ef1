"""Recovery after Redis data loss: `python -m services.learning republish --since/--until`.

The stream is deleted in the suite's own (leased) Redis database: one completion already mailed,
one published but never read by the notifier. Republishing the range mails exactly the lost one.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from libs.outbox_republish import BadRange, TimeRange
from libs.settings import Settings, to_libpq_url
from libs.streams import COURSE_COMPLETED_STREAM, FIELD_EVENT_ID, NOTIFIER_GROUP
from tests.conftest import User, register_and_login
from tests.learning_support import (
    Course,
    enroll,
    outbox_rows,
    progress_rows,
    published_course,
    query,
)
from tests.notifier_support import (
    MailCatcher,
    eventually,
    fast_settings,
    handled,
    pending_ids,
    running_notifier,
)

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_a_range_is_read_as_utc_and_defaults_to_now() -> None:
    window = TimeRange.parse("2026-11-27T10:15:00", None, now=NOW)
    assert window == TimeRange(datetime(2026, 11, 27, 10, 15, tzinfo=UTC), NOW)
    window = TimeRange.parse("2026-11-27T10:15:00Z", "2026-11-27T12:15:00+01:00", now=NOW)
    assert window.until - window.since == timedelta(hours=1)


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        ("yesterday", None, "--since: 'yesterday' is not an ISO 8601 timestamp"),
        ("2026-11-27T10:15:00Z", "soon", "--until: 'soon' is not an ISO 8601 timestamp"),
        ("2026-11-27T10:15:00Z", "2026-11-27T10:15:00Z", "must be later than --since"),
        ("2026-12-02T00:00:00Z", None, "must be later than --since"),  # since in the future
    ],
)
def test_a_bad_range_is_refused_with_the_reason(
    since: str, until: str | None, message: str
) -> None:
    with pytest.raises(BadRange, match=message):
        TimeRange.parse(since, until, now=NOW)


async def run_command(settings: Settings, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
    env["LOG_LEVEL"] = "WARNING"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.learning",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "the following arguments are required: --since"),
        (("--since", "last tuesday"), "is not an ISO 8601 timestamp"),
        (("--since", "2026-11-27T10:00Z", "--until", "2026-11-27T09:00Z"), "must be later"),
    ],
)
async def test_the_command_exits_non_zero_on_bad_arguments(
    settings: Settings, args: tuple[str, ...], message: str
) -> None:
    code, out, err = await run_command(settings, "republish", *args)
    assert code == 2
    assert message in err
    assert out == ""


async def database_clock(settings: Settings) -> datetime:
    [row] = await query(to_libpq_url(settings.database_url), "SELECT clock_timestamp() AS now")
    return row["now"]


async def complete_course(client: httpx.AsyncClient, student: User, course: Course) -> int:
    enrollment = await enroll(client, student, course.id)
    rows = await progress_rows(client, student, enrollment["id"])
    for row in sorted(rows, key=lambda row: course.lesson_ids.index(row["lesson"])):
        done = await client.post(f"/api/progress/{row['id']}/complete/", headers=student.headers)
        assert done.status_code == 200, done.text
    return enrollment["id"]


async def published_event_id(settings: Settings, enrollment_id: int) -> str:
    async def published() -> bool:
        rows = await outbox_rows(to_libpq_url(settings.database_url), enrollment_id)
        return bool(rows) and all(row["published_at"] for row in rows)

    await eventually(published, what="the relay to publish the completion")
    [row] = await outbox_rows(to_libpq_url(settings.database_url), enrollment_id)
    return str(row["event_id"])


async def test_republish_after_the_stream_was_lost_mails_exactly_the_lost_completion(
    settings: Settings,
    services: dict[str, str],
    client: httpx.AsyncClient,
    instructor: User,
    redis: Redis,
    catcher: MailCatcher,
) -> None:
    since = await database_clock(settings)
    course = await published_course(client, instructor, lessons=2)
    mailed, lost = [
        await register_and_login(client, "Student", full_name=f"Student {uuid.uuid4().hex[:6]}")
        for _ in range(2)
    ]
    config = fast_settings(settings, catcher)

    async with running_notifier(config):
        enrollment = await complete_course(client, mailed, course)
        await published_event_id(settings, enrollment)
        await eventually(lambda: catcher.to(mailed.email), what="the first mail")
        await eventually(lambda: _all_handled(redis), what="the first entry to be acked")

    # The notifier is down; the next completion is published and then lost with the stream.
    lost_event = await published_event_id(settings, await complete_course(client, lost, course))
    entries = await redis.xrange(COURSE_COMPLETED_STREAM)
    assert lost_event in {fields[FIELD_EVENT_ID.encode()].decode() for _, fields in entries}
    await redis.delete(COURSE_COMPLETED_STREAM)  # Redis restarted without its data
    until = await database_clock(settings)

    async with running_notifier(config):
        code, out, err = await run_command(
            settings, "republish", "--since", since.isoformat(), "--until", until.isoformat()
        )
        assert code == 0, err
        assert f"republished 2 event(s) created from {since.astimezone(UTC).isoformat()}" in out
        assert f"({COURSE_COMPLETED_STREAM}: 2)" in out

        await eventually(lambda: catcher.to(lost.email), what="the lost completion's mail")
        await eventually(lambda: _all_handled(redis), what="both republished entries acked")
        await asyncio.sleep(1.0)  # more than a reclaim idle time: room for a wrong resend

    assert len(catcher.to(lost.email)) == 1
    assert len(catcher.to(mailed.email)) == 1  # its republished copy was only acknowledged
    republished = await redis.xrange(COURSE_COMPLETED_STREAM)
    assert len(republished) == 2


async def _all_handled(redis: Redis) -> bool:
    entries = await redis.xrange(COURSE_COMPLETED_STREAM)
    if not entries:
        return False
    last = entries[-1][0].decode()
    return await handled(redis, COURSE_COMPLETED_STREAM, NOTIFIER_GROUP, last) and not (
        await pending_ids(redis, COURSE_COMPLETED_STREAM, NOTIFIER_GROUP)
    )
