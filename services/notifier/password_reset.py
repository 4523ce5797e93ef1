"""The password-reset mail: decoding a PasswordResetRequested entry and composing it. Pure.

The entry carries the reset code in clear (docs/identity.md "Password reset"): it goes into the
mail and nowhere else, in particular never into a log line or an error message here.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from courseplatform.events.v1 import events_pb2
from google.protobuf.message import DecodeError

from libs.proto_time import from_timestamp
from libs.streams import FIELD_EVENT, FIELD_EVENT_ID, PASSWORD_RESET_TYPE, decode_entry
from services.notifier.events import EVENT_ID_PATTERN, MalformedEvent, plausible_address
from services.notifier.kinds import ComposedMail, MailKind, StaleEvent
from services.notifier.mail import message_id_for
from services.notifier.mailer import OutgoingMail

SUBJECT = "Reset your Course Platform password"
# What identity issues (secrets.token_urlsafe): URL-safe base64, nothing that could break a line.
CODE_PATTERN = re.compile(r"[A-Za-z0-9_-]{22,128}")
KIND = "password-reset"


@dataclass(frozen=True)
class PasswordReset:
    event_id: str
    user_id: int
    email: str
    full_name: str
    code: str
    expires_at: datetime


def decode_reset(fields: Mapping[bytes, bytes]) -> PasswordReset:
    entry = decode_entry(fields)
    if entry.type is not None and entry.type != PASSWORD_RESET_TYPE:
        raise MalformedEvent(f"unexpected type {entry.type!r}, expected {PASSWORD_RESET_TYPE!r}")
    if entry.event is None:
        raise MalformedEvent(f"entry has no {FIELD_EVENT!r} field")
    event = events_pb2.PasswordResetRequested()
    try:
        event.ParseFromString(entry.event)
    except DecodeError:
        raise MalformedEvent(f"{FIELD_EVENT!r} is not a PasswordResetRequested protobuf") from None
    if not EVENT_ID_PATTERN.fullmatch(event.event_id):
        raise MalformedEvent(f"event_id {event.event_id!r} is missing or not a safe identifier")
    if entry.event_id is not None and entry.event_id != event.event_id:
        raise MalformedEvent(f"{FIELD_EVENT_ID!r} field differs from the event's event_id")
    email = event.email.strip()
    if not plausible_address(email):
        raise MalformedEvent(f"email {event.email!r} is not an email address")
    if not CODE_PATTERN.fullmatch(event.code):
        raise MalformedEvent("code is missing or malformed")  # never the code itself
    if not event.HasField("expires_at"):
        raise MalformedEvent("expires_at is missing")
    return PasswordReset(
        event_id=event.event_id,
        user_id=event.user_id,
        email=email,
        full_name=" ".join(event.full_name.split()),
        code=event.code,
        expires_at=from_timestamp(event.expires_at),
    )


def reset_link(base_url: str, code: str) -> str:
    # The code rides in the fragment: browsers never send it to a server, so it stays out of
    # web server and proxy logs of whatever page serves the link.
    return f"{base_url.rstrip('/')}/password-reset/#code={code}"


def compose_reset(
    reset: PasswordReset, sender: str, base_url: str, now: datetime | None = None
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = Address(display_name=reset.full_name, addr_spec=reset.email)
    message["Subject"] = SUBJECT
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["Message-ID"] = message_id_for(reset.event_id, sender)
    message["Auto-Submitted"] = "auto-generated"
    link = reset_link(base_url, reset.code)
    expires = f"{reset.expires_at.astimezone(UTC):%d %B %Y, %H:%M} UTC"
    greeting = f"Hi {reset.full_name}," if reset.full_name else "Hi,"
    message.set_content(
        f"{greeting}\n"
        "\n"
        "Someone asked to reset the password of your Course Platform account. To choose a new\n"
        "password, open this link or enter the code below:\n"
        "\n"
        f"{link}\n"
        "\n"
        f"Reset code: {reset.code}\n"
        "\n"
        f"The code works once, until {expires}. Resetting signs you out everywhere.\n"
        "If you did not ask for this, ignore this mail: your password stays as it is.\n"
        "\n"
        "The Course Platform team\n"
    )
    name = html.escape(reset.full_name)
    message.add_alternative(
        "<!DOCTYPE html>\n"
        '<html lang="en"><body style="font-family: sans-serif; line-height: 1.5">\n'
        f"<p>{'Hi ' + name + ',' if name else 'Hi,'}</p>\n"
        "<p>Someone asked to reset the password of your Course Platform account. To choose a "
        "new password, open this link or enter the code below:</p>\n"
        f'<p><a href="{html.escape(link)}">Choose a new password</a></p>\n'
        f"<p>Reset code: <code>{html.escape(reset.code)}</code></p>\n"
        f"<p>The code works once, until {html.escape(expires)}. Resetting signs you out "
        "everywhere. If you did not ask for this, ignore this mail: your password stays as "
        "it is.</p>\n"
        "<p>The Course Platform team</p>\n"
        "</body></html>\n",
        subtype="html",
    )
    return message


def password_reset_kind(base_url: str) -> MailKind:
    def compose_entry(fields: Mapping[bytes, bytes], sender: str, now: datetime) -> ComposedMail:
        reset = decode_reset(fields)
        if reset.expires_at <= now:
            raise StaleEvent("the reset code expired before it could be mailed")
        message = compose_reset(reset, sender, base_url, now)
        mail = OutgoingMail(key=reset.event_id, recipient=reset.email, message=message, kind=KIND)
        return ComposedMail(
            mail=mail,
            event_id=reset.event_id,
            log_fields={"recipient": reset.email, "user_id": reset.user_id},
        )

    return MailKind(name=KIND, compose=compose_entry, delete_when_done=True)
