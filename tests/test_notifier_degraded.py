"""Degraded health: with the SMTP server stopped, the notifier's `/health` stays ready (it can
consume) but says `degraded` with the reasons, and `/metrics` shows the failures, the dead letter
and the degraded gauge; once SMTP is back a mail goes out and the SMTP reason clears."""

from __future__ import annotations

import httpx
import pytest
from redis.asyncio import Redis

from libs.settings import Settings
from services.notifier.app import NotifierApp
from services.notifier.observability import (
    DEAD_LETTERS_GREW,
    SMTP_FAILING,
    SmtpHealth,
    degraded_reasons,
    entry_time,
)
from tests.conftest import serve_asgi
from tests.metrics_support import scrape
from tests.notifier_support import (
    MailCatcher,
    TestStream,
    completion_event,
    eventually,
    fast_settings,
    publish,
)


@pytest.mark.unit
def test_the_degraded_rule() -> None:
    def reasons(failing_since: float | None, dead_letter_at: float | None) -> list[str]:
        return degraded_reasons(
            now=1000.0,
            smtp_failing_since=failing_since,
            smtp_threshold_s=60.0,
            newest_dead_letter_at=dead_letter_at,
            dead_letter_interval_s=600.0,
        )

    assert reasons(None, None) == []
    assert reasons(950.0, None) == []  # failing for 50 s: not yet
    assert reasons(940.0, None) == [SMTP_FAILING]
    assert reasons(None, 399.0) == []  # the last dead letter is older than the interval
    assert reasons(None, 400.0) == [DEAD_LETTERS_GREW]
    assert reasons(900.0, 999.0) == [SMTP_FAILING, DEAD_LETTERS_GREW]
    assert entry_time(b"1764590000123-0") == 1764590000.123


@pytest.mark.unit
def test_smtp_health_remembers_the_first_failure_until_a_mail_is_accepted() -> None:
    now = [10.0]
    health = SmtpHealth(clock=lambda: now[0])
    health.failed()
    now[0] = 20.0
    health.failed()
    assert health.failing_since == 10.0
    health.accepted()
    assert health.failing_since is None


async def test_smtp_stopped_makes_the_notifier_degraded_not_unready(
    settings: Settings, redis: Redis
) -> None:
    catcher = MailCatcher().start()
    catcher.stop()  # its port is now closed: every connection is refused
    stream = TestStream()
    notifier = NotifierApp(
        fast_settings(
            settings,
            catcher,
            notifier_max_attempts=2,
            notifier_degraded_smtp_s=0.3,
            notifier_degraded_interval_s=600.0,
        ),
        stream=stream.name,
        dead_letter_stream=stream.dead_letters,
    )
    kind = stream.name.split(".")[-2]
    async with serve_asgi(notifier.app) as url, httpx.AsyncClient(base_url=url) as http:
        health = (await http.get("/health")).json()
        assert (health["status"], health["degraded"]) == ("ok", [])
        before = await scrape(f"{url}/metrics")

        await publish(redis, stream.name, completion_event())

        async def dead_lettered() -> bool:
            return await redis.xlen(stream.dead_letters) == 1

        await eventually(dead_lettered, timeout_s=30, what="the dead letter")
        response = await http.get("/health")
        assert response.status_code == 200, response.text  # still ready: it can consume
        body = response.json()
        assert body["status"] == "degraded"
        assert set(body["degraded"]) == {SMTP_FAILING, DEAD_LETTERS_GREW}
        assert body["checks"] == {"redis": True, "postgres": True, "subscribers": True}

        after = await scrape(f"{url}/metrics")
        failures = "courseplatform_mail_failures_total"
        assert (
            after.value(failures, kind=kind, reason="transient")
            - before.value(failures, kind=kind, reason="transient")
            >= 2
        )
        assert after.value("courseplatform_mail_retries_total", kind=kind) > before.value(
            "courseplatform_mail_retries_total", kind=kind
        )
        dead = "courseplatform_mail_dead_lettered_total"
        assert (
            after.value(dead, kind=kind, reason="gave_up")
            - before.value(dead, kind=kind, reason="gave_up")
            == 1
        )
        assert after.value("courseplatform_stream_length", stream=stream.dead_letters) == 1
        assert after.value("courseplatform_notifier_degraded", reason=SMTP_FAILING) == 1
        assert after.value("courseplatform_notifier_degraded", reason=DEAD_LETTERS_GREW) == 1
        assert after.value("courseplatform_mail_sent_total", kind=kind) == before.value(
            "courseplatform_mail_sent_total", kind=kind
        )

        # SMTP back on the same port: the next mail is accepted and the SMTP reason clears (the
        # dead letter keeps the notifier degraded for the rest of the interval).
        back = MailCatcher(port=catcher.port).start()
        try:
            event = completion_event()
            await publish(redis, stream.name, event)
            await eventually(lambda: bool(back.mails), timeout_s=30, what="the mail")

            async def only_dead_letters() -> bool:
                body = (await http.get("/health")).json()
                return bool(body["degraded"] == [DEAD_LETTERS_GREW])

            await eventually(only_dead_letters, timeout_s=10, what="the SMTP reason to clear")
            final = await scrape(f"{url}/metrics")
            assert final.value("courseplatform_notifier_degraded", reason=SMTP_FAILING) == 0
        finally:
            back.stop()
