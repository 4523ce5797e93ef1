"""The course-completed email: subject, plain-text body and HTML alternative. Pure: no I/O."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from services.notifier.events import CourseCompletion

SUBJECT_PREFIX = "Congratulations! You completed "
FALLBACK_DOMAIN = "courseplatform.local"


def subject_for(completion: CourseCompletion) -> str:
    return _one_line(f"{SUBJECT_PREFIX}{completion.course_title}")


def _one_line(text: str) -> str:
    # Header values never carry line breaks from user text (no header injection).
    return " ".join(text.split())


def message_id_for(event_id: str, sender: str) -> str:
    """Same event, same Message-ID: a resend after a crash is recognisable as the same mail."""
    _, at, domain = parseaddr(sender)[1].rpartition("@")
    domain = domain if at and domain else FALLBACK_DOMAIN
    # Short enough (a UUID and a domain) to stay on one header line.
    return f"<{event_id}@{domain}>"


def compose(completion: CourseCompletion, sender: str, now: datetime | None = None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = Address(
        display_name=_one_line(completion.student_full_name), addr_spec=completion.student_email
    )
    message["Subject"] = subject_for(completion)
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["Message-ID"] = message_id_for(completion.event_id, sender)
    # RFC 3834: an automatic message; vacation responders must not answer it.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(_plain_text(completion))
    message.add_alternative(_html(completion), subtype="html")
    return message


def _completed_on(completion: CourseCompletion) -> str:
    if completion.completed_at is None:
        return ""
    return f" on {completion.completed_at.astimezone(UTC):%d %B %Y}"


def _plain_text(completion: CourseCompletion) -> str:
    return (
        f"Hi {completion.student_full_name},\n"
        "\n"
        f'Congratulations! You completed the course "{completion.course_title}"'
        f"{_completed_on(completion)}.\n"
        "\n"
        "Every lesson is done. Well earned, and we hope to see you in your next course.\n"
        "\n"
        "The Course Platform team\n"
    )


def _html(completion: CourseCompletion) -> str:
    # Names and titles are user text: escaped, so they can never become markup.
    name = html.escape(completion.student_full_name)
    title = html.escape(completion.course_title)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><body style="font-family: sans-serif; line-height: 1.5">\n'
        f"<p>Hi {name},</p>\n"
        f"<p>Congratulations! You completed the course <strong>{title}</strong>"
        f"{html.escape(_completed_on(completion))}.</p>\n"
        "<p>Every lesson is done. Well earned, and we hope to see you in your next course.</p>\n"
        "<p>The Course Platform team</p>\n"
        "</body></html>\n"
    )
