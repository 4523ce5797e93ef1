"""End to end through the gateway: a student completes every lesson over REST, the learning
service's outbox relay publishes the event, the notifier mails it to a real SMTP server (aiosmtpd).
Exactly one mail, whatever is repeated on the way.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from courseplatform.events.v1 import events_pb2
from redis.asyncio import Redis

from libs.settings import Settings
from libs.streams import COURSE_COMPLETED_STREAM, FIELD_EVENT, NOTIFIER_GROUP
from services.notifier.app import NotifierApp
from tests.conftest import User, register_and_login
from tests.learning_support import enroll, progress_rows, published_course
from tests.notifier_support import (
    MailCatcher,
    ReceivedMail,
    eventually,
    fast_settings,
    handled,
    running_notifier,
)


@pytest.fixture
async def notifier(
    settings: Settings, services: dict[str, str], catcher: MailCatcher
) -> AsyncIterator[NotifierApp]:
    """The notifier on the production stream the suite's learning service publishes to."""
    async with running_notifier(fast_settings(settings, catcher)) as running:
        yield running


async def entries_of_enrollment(redis: Redis, enrollment_id: int) -> list[tuple[str, dict]]:
    found = []
    for entry_id, fields in await redis.xrange(COURSE_COMPLETED_STREAM):
        event = events_pb2.CourseCompleted.FromString(fields[FIELD_EVENT.encode()])
        if event.enrollment_id == enrollment_id:
            found.append((entry_id.decode(), fields))
    return found


async def test_completing_a_course_mails_the_student_exactly_once(
    client: httpx.AsyncClient,
    instructor: User,
    redis: Redis,
    catcher: MailCatcher,
    notifier: NotifierApp,
) -> None:
    student = await register_and_login(
        client, "Student", full_name=f"Grace Hopper {uuid.uuid4().hex[:6]}"
    )
    course = await published_course(client, instructor, lessons=3)
    enrollment = await enroll(client, student, course.id)
    by_lesson = {
        row["lesson"]: row["id"] for row in await progress_rows(client, student, enrollment["id"])
    }
    progress_ids = [by_lesson[lesson_id] for lesson_id in course.lesson_ids]

    for progress_id in progress_ids[:-1]:
        done = await client.post(f"/api/progress/{progress_id}/complete/", headers=student.headers)
        assert done.status_code == 200, done.text
    assert catcher.to(student.email) == []  # not complete yet: no mail

    # The last lesson, with the client retrying its request at the same time.
    last = progress_ids[-1]
    answers = await asyncio.gather(
        *(client.post(f"/api/progress/{last}/complete/", headers=student.headers) for _ in range(3))
    )
    assert all(answer.status_code == 200 for answer in answers), [a.text for a in answers]

    await eventually(lambda: catcher.to(student.email), what="the completion mail")
    [mail] = catcher.to(student.email)
    assert_completion_mail(mail, student, course.title)

    # Completing again, by both routes, changes nothing and mails nothing.
    for progress_id in progress_ids:
        again = await client.post(f"/api/progress/{progress_id}/complete/", headers=student.headers)
        assert again.status_code == 200, again.text
        patched = await client.patch(
            f"/api/progress/{progress_id}/", json={"completed": True}, headers=student.headers
        )
        assert patched.status_code == 200, patched.text

    # The relay republishes the event (its at-least-once window): still one mail.
    [(first_entry, fields)] = await entries_of_enrollment(redis, enrollment["id"])
    republished = (await redis.xadd(COURSE_COMPLETED_STREAM, fields)).decode()
    for entry_id in (first_entry, republished):
        await eventually(
            lambda e=entry_id: handled(redis, COURSE_COMPLETED_STREAM, NOTIFIER_GROUP, e),
            what="the entries to be handled",
        )
    assert len(await entries_of_enrollment(redis, enrollment["id"])) == 2
    assert len(catcher.to(student.email)) == 1


def assert_completion_mail(mail: ReceivedMail, student: User, course_title: str) -> None:
    assert mail.recipients == [student.email]
    assert course_title in str(mail.message["Subject"])
    assert mail.message["Subject"] == f"Congratulations! You completed {course_title}"
    assert student.full_name in mail.text
    assert student.full_name in mail.html
    assert mail.message["To"].addresses[0].display_name == student.full_name


async def test_every_student_of_a_course_gets_their_own_mail(
    client: httpx.AsyncClient,
    instructor: User,
    catcher: MailCatcher,
    notifier: NotifierApp,
) -> None:
    course = await published_course(client, instructor, lessons=2)
    students = [await register_and_login(client, "Student") for _ in range(3)]
    for student in students:
        enrollment = await enroll(client, student, course.id)
        for row in sorted(
            await progress_rows(client, student, enrollment["id"]),
            key=lambda row: course.lesson_ids.index(row["lesson"]),
        ):
            done = await client.post(
                f"/api/progress/{row['id']}/complete/", headers=student.headers
            )
            assert done.status_code == 200, done.text

    for student in students:
        await eventually(lambda s=student: catcher.to(s.email), what="each student's mail")
    for student in students:
        [mail] = catcher.to(student.email)
        assert_completion_mail(mail, student, course.title)
