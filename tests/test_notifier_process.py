"""The notifier as a process: health endpoint, `python -m services.notifier` writing .eml files
(the `make run` default) and stopping cleanly on SIGTERM, `make docs`' AsyncAPI output."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email import message_from_bytes, policy
from pathlib import Path

import httpx
from redis.asyncio import Redis

from libs.embedded import free_port
from libs.settings import Settings
from libs.streams import COURSE_COMPLETED_DLQ, COURSE_COMPLETED_STREAM, NOTIFIER_GROUP
from services.notifier.app import NotifierApp
from tests.conftest import serve_asgi
from tests.notifier_support import (
    TestStream,
    completion_event,
    eventually,
    fast_settings,
    pending_ids,
    publish,
    stream_entry,
)

ROOT = Path(__file__).resolve().parent.parent


@asynccontextmanager
async def served(notifier: NotifierApp) -> AsyncIterator[str]:
    """The notifier's ASGI app under uvicorn on a free port, as `python -m services.notifier`."""
    async with serve_asgi(notifier.app) as url:
        yield url


async def test_health_is_ok_when_redis_postgres_and_subscribers_are(settings: Settings) -> None:
    stream = TestStream()
    notifier = NotifierApp(
        fast_settings(settings), stream=stream.name, dead_letter_stream=stream.dead_letters
    )
    async with served(notifier) as url, httpx.AsyncClient(base_url=url) as http:
        health = await http.get("/health")
        assert health.status_code == 200, health.text
        assert health.json() == {
            "status": "ok",
            "consumer": notifier.consumer,
            "checks": {"redis": True, "postgres": True, "subscribers": True},
            "degraded": [],
        }
        assert (await http.get("/livez")).status_code == 204
        spec = await http.get("/docs/asyncapi.json")
        assert spec.status_code == 200
        assert stream.name in spec.json()["channels"]


async def test_health_reports_unavailable_when_postgres_is_unreachable(
    settings: Settings,
) -> None:
    stream = TestStream()
    unreachable = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere"
    notifier = NotifierApp(
        fast_settings(settings, database_url=unreachable),
        stream=stream.name,
        dead_letter_stream=stream.dead_letters,
    )
    async with served(notifier) as url, httpx.AsyncClient(base_url=url) as http:
        health = await http.get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "unavailable"
        assert health.json()["checks"] == {"redis": True, "postgres": False, "subscribers": True}
        assert (await http.get("/livez")).status_code == 204


async def test_process_writes_eml_files_and_stops_cleanly_on_sigterm(
    settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    mail_dir = tmp_path / "mail"
    health_port = free_port()
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("SMTP_", "MAIL_"))
    }
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        MAIL_DIR=str(mail_dir),
        NOTIFIER_HEALTH_PORT=str(health_port),
        NOTIFIER_CONSUMER=f"process-test-{health_port}",
        LOG_LEVEL="INFO",
        LOG_JSON="true",
    )
    log_path = tmp_path / "notifier.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.notifier",
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{health_port}") as http:
            await eventually(lambda: _healthy(http), what="the process to report healthy")
        event = completion_event()
        entry_id = await publish(redis, COURSE_COMPLETED_STREAM, event)
        mail = mail_dir / f"course-completed-{event.event_id}.eml"
        await eventually(mail.exists, what="the .eml file")
        await eventually(lambda: _acked(redis, entry_id), what="the entry to be acknowledged")
        process.send_signal(signal.SIGTERM)
        exit_code = await asyncio.wait_for(process.wait(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = log_path.read_text()
    # uvicorn re-raises the SIGTERM it handled once shutdown is complete, as the gateway does.
    assert exit_code in (0, -signal.SIGTERM), output
    logged = [json.loads(line)["event"] for line in output.splitlines() if line.startswith("{")]
    assert "notifier starting" in logged
    assert "notifier stopped" in logged, output  # the shutdown hooks ran to the end
    assert "FastStream app shut down gracefully." in logged

    message = message_from_bytes(mail.read_bytes(), policy=policy.default)
    assert message["To"].addresses[0].addr_spec == event.student_email
    assert message["Subject"] == f"Congratulations! You completed {event.course_title}"
    assert [path.name for path in mail_dir.iterdir()] == [mail.name]  # no temporary leftovers


async def _healthy(http: httpx.AsyncClient) -> bool:
    try:
        return (await http.get("/health")).status_code == 200
    except httpx.TransportError:
        return False


async def _acked(redis: Redis, entry_id: str) -> bool:
    return entry_id not in await pending_ids(redis, COURSE_COMPLETED_STREAM, NOTIFIER_GROUP)


def test_make_docs_prints_the_asyncapi_document() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.notifier.asyncapi"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    )
    spec = json.loads(result.stdout)
    assert spec["info"]["title"] == "courseplatform notifier"
    assert COURSE_COMPLETED_STREAM in spec["channels"]


async def test_replay_command_moves_chosen_dead_letters_back_to_the_stream(
    settings: Settings, redis: Redis
) -> None:
    event = completion_event()
    letter = {
        **stream_entry(event),
        "dlq_reason": "gave up after 5 attempts: SMTP down",
        "dlq_source_stream": COURSE_COMPLETED_STREAM,
    }
    letter_id = (await redis.xadd(COURSE_COMPLETED_DLQ, letter)).decode()  # type: ignore[arg-type]
    env = {**os.environ, "REDIS_URL": settings.redis_url, "DATABASE_URL": settings.database_url}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.notifier",
        "replay-dead-letters",
        letter_id,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, output.decode()
    assert b"replayed 1 dead letter(s)" in output

    assert await redis.xrange(COURSE_COMPLETED_DLQ, letter_id, letter_id) == []
    [(_, replayed)] = [
        (entry_id, fields)
        for entry_id, fields in await redis.xrange(COURSE_COMPLETED_STREAM)
        if fields.get(b"event_id") == event.event_id.encode()
    ]
    assert replayed[b"event"] == event.SerializeToString()
    assert not [key for key in replayed if key.startswith(b"dlq_")]
