"""Notifier processes SIGKILLed in the middle of deliveries: how long a dead sender's mail waits,
and how many mails go out twice.

Real `python -m services.notifier` processes, a Redis server of the test's own (so the production
stream name is used undisturbed), the suite's PostgreSQL, aiosmtpd. The SMTP server holds its reply
to a chosen DATA or QUIT so that the kill lands inside a delivery:
- during DATA the mail is not accepted yet (the client vanishes before reading the 250, and
  aiosmtpd drops the transaction), so another process must send it;
- during QUIT the mail is accepted and must not be sent again.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from libs.embedded import EmbeddedRedis, free_port
from libs.settings import Settings
from libs.streams import COURSE_COMPLETED_STREAM, NOTIFIER_GROUP
from services.notifier.mail import message_id_for
from tests.notifier_support import MailCatcher, completion_event, eventually, pending_ids, publish

ROOT = Path(__file__).resolve().parent.parent
# The processes run without MAIL_* variables.
DEFAULT_MAIL_FROM = Settings.model_fields["mail_from"].default


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[tuple[str, Redis]]:
    server = EmbeddedRedis(tmp_path / "redis")
    client = Redis.from_url(server.url())
    yield server.url(), client
    await client.aclose()
    server.stop()


class NotifierProcesses:
    """Starts `python -m services.notifier` processes with one environment; kills them."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self._env = env
        self._log_dir = log_dir
        self.running: list[asyncio.subprocess.Process] = []

    async def start(self) -> asyncio.subprocess.Process:
        health_port = free_port()
        env = {**self._env, "NOTIFIER_HEALTH_PORT": str(health_port)}
        with (self._log_dir / f"notifier-{health_port}.log").open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services.notifier",
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.running.append(process)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{health_port}") as http:
            await eventually(lambda: _healthy(http), timeout_s=60, what="a healthy notifier")
        return process

    async def kill(self, process: asyncio.subprocess.Process) -> None:
        process.kill()  # SIGKILL: no shutdown hook runs
        await process.wait()
        self.running.remove(process)

    async def stop_all(self) -> None:
        for process in list(self.running):
            await self.kill(process)


async def _healthy(http: httpx.AsyncClient) -> bool:
    try:
        return (await http.get("/health")).status_code == 200
    except httpx.HTTPError:
        return False


@asynccontextmanager
async def notifier_processes(
    settings: Settings, catcher: MailCatcher, redis_url: str, log_dir: Path, **extra: str
) -> AsyncIterator[NotifierProcesses]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SMTP_", "MAIL_", "NOTIFIER_"))
    }
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=redis_url,
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(catcher.port),
        LOG_LEVEL="INFO",
        LOG_JSON="true",
        **extra,
    )
    processes = NotifierProcesses(env, log_dir)
    try:
        yield processes
    finally:
        await processes.stop_all()


async def test_a_killed_notifiers_mail_goes_out_from_another_within_30_s_by_default(
    settings: Settings,
    catcher: MailCatcher,
    own_redis: tuple[str, Redis],
    tmp_path: Path,
) -> None:
    """Default NOTIFIER_RECLAIM_IDLE_MS (15 s) and NOTIFIER_LEASE_S (10 s). Notifier A is held
    in DATA for 20 s while notifier B runs: longer than the idle time plus a reclaim poll, so B
    would have taken the entry over by then if A's heartbeat did not keep it. Then A is killed
    and B must send the mail within 30 s. (SMTP_TIMEOUT_S is raised only so that A's client
    keeps waiting for the held reply.)"""
    redis_url, redis = own_redis
    event = completion_event()
    async with notifier_processes(
        settings, catcher, redis_url, tmp_path, SMTP_TIMEOUT_S="120"
    ) as processes:
        first = await processes.start()
        in_data = catcher.hold_next("DATA", 300.0)
        await publish(redis, COURSE_COMPLETED_STREAM, event)
        await eventually(in_data.is_set, what="notifier A in DATA")
        held_since = time.monotonic()
        await processes.start()

        await asyncio.sleep(max(0.0, held_since + 20.0 - time.monotonic()))
        assert catcher.data_count == 1, "the live sender's delivery was taken over"
        assert catcher.to(event.student_email) == []

        await processes.kill(first)
        killed_at = time.monotonic()
        await eventually(
            lambda: catcher.to(event.student_email), timeout_s=60, what="the mail from B"
        )
        waited_s = time.monotonic() - killed_at
        await eventually(lambda: _nothing_pending(redis), what="the ack")
    print(f"\nkilled sender's mail went out {waited_s:.1f} s after the SIGKILL")
    assert waited_s <= 30.0
    assert len(catcher.to(event.student_email)) == 1


async def _nothing_pending(redis: Redis) -> bool:
    return not await pending_ids(redis, COURSE_COMPLETED_STREAM, NOTIFIER_GROUP)


KILLS = 6
EVENTS = 40
HOLD_S = 3.0


async def test_repeated_sigkill_mid_delivery_mails_every_event_once_with_its_message_id(
    settings: Settings,
    catcher: MailCatcher,
    own_redis: tuple[str, Redis],
    tmp_path: Path,
) -> None:
    """40 events; the notifier is SIGKILLed 6 times, alternately while the server holds its
    reply to DATA (mail not accepted) and to QUIT (mail accepted, `sent` already recorded, entry
    not yet acked), and restarted each time. Every event is mailed at least once, copies of one
    event carry one Message-ID, and the duplicates are counted."""
    redis_url, redis = own_redis
    events = [completion_event() for _ in range(EVENTS)]
    per_batch = EVENTS // (KILLS + 1)
    held_commands: list[str] = []
    async with notifier_processes(
        settings,
        catcher,
        redis_url,
        tmp_path,
        NOTIFIER_RECLAIM_IDLE_MS="1500",
        NOTIFIER_LEASE_S="1.0",
        SMTP_TIMEOUT_S="10",
    ) as processes:
        process = await processes.start()
        for kill in range(KILLS):
            command = "DATA" if kill % 2 == 0 else "QUIT"
            held = catcher.hold_next(command, HOLD_S)
            for event in events[kill * per_batch : (kill + 1) * per_batch]:
                await publish(redis, COURSE_COMPLETED_STREAM, event)
            await eventually(held.is_set, timeout_s=60, what=f"a delivery held in {command}")
            await processes.kill(process)
            held_commands.append(command)
            process = await processes.start()
        for event in events[KILLS * per_batch :]:
            await publish(redis, COURSE_COMPLETED_STREAM, event)

        await eventually(
            lambda: all(catcher.to(event.student_email) for event in events),
            timeout_s=90,
            what="every mail",
        )
        await eventually(lambda: _nothing_pending(redis), timeout_s=30, what="every ack")
        await asyncio.sleep(2.0)  # more than a reclaim idle time: room for a late resend

    # Each event has a recipient of its own: the copies of an event are the mails to it.
    copies = {event.event_id: catcher.to(event.student_email) for event in events}
    duplicates = sum(len(mails) - 1 for mails in copies.values())
    print(
        f"\n{len(held_commands)} kills ({held_commands.count('DATA')} held in DATA, "
        f"{held_commands.count('QUIT')} in QUIT), {EVENTS} events, "
        f"{sum(len(mails) for mails in copies.values())} mails, {duplicates} duplicate(s)"
    )
    assert all(copies.values()), "an event was never mailed"
    for event_id, mails in copies.items():
        assert {str(mail.message["Message-ID"]) for mail in mails} == {
            message_id_for(event_id, DEFAULT_MAIL_FROM)
        }
    # Kills in QUIT land after the acceptance: before `sent` was recorded ahead of QUIT, each
    # of them re-sent its mail. A kill in DATA cannot duplicate (the server never accepted).
    assert duplicates <= 1, {event_id: len(mails) for event_id, mails in copies.items()}
