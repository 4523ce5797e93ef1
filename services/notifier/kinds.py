"""The kinds of mail the notifier sends, one per stream: how an entry becomes a mail. Pure.

A kind turns a stream entry into the mail to send and the log fields that describe it (never a
secret), or raises `MalformedEvent` (dead-lettered: no retry can fix it) or `StaleEvent`
(acknowledged without a mail: it is too late for it to be of use).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from services.notifier.events import decode_completion
from services.notifier.mail import compose
from services.notifier.mailer import OutgoingMail


class StaleEvent(Exception):
    """The mail would be useless now (an expired reset code); the message says why."""


@dataclass(frozen=True)
class ComposedMail:
    mail: OutgoingMail
    event_id: str
    log_fields: dict[str, object] = field(default_factory=dict)


# (entry fields, sender address, now) -> the mail.
Composer = Callable[[Mapping[bytes, bytes], str, datetime], ComposedMail]


@dataclass(frozen=True)
class MailKind:
    name: str  # "course-completed": log lines ("<name> mail sent") and .eml file names
    compose: Composer
    # Delete the stream entry once it is acknowledged: it holds a secret (a reset code), and
    # the notifier's group is the stream's only reader.
    delete_when_done: bool = False


def _course_completed(fields: Mapping[bytes, bytes], sender: str, now: datetime) -> ComposedMail:
    completion = decode_completion(fields)
    message = compose(completion, sender, now)
    mail = OutgoingMail(
        key=completion.event_id, recipient=completion.student_email, message=message
    )
    return ComposedMail(
        mail=mail,
        event_id=completion.event_id,
        log_fields={"recipient": completion.student_email, "course_id": completion.course_id},
    )


COURSE_COMPLETED = MailKind(name="course-completed", compose=_course_completed)
