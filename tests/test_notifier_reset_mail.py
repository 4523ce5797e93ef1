"""The password-reset mail as pure units: decoding the entry, composing the mail, and that the
code never reaches an error message (which would end up in logs and dead-letter reasons)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest
from courseplatform.events.v1 import events_pb2

from libs.proto_time import to_timestamp
from libs.streams import PASSWORD_RESET_TYPE, encode_entry
from services.notifier.events import MalformedEvent
from services.notifier.kinds import StaleEvent
from services.notifier.password_reset import decode_reset, password_reset_kind

pytestmark = pytest.mark.unit

SENDER = "Course Platform <no-reply@courseplatform.example>"
BASE_URL = "https://courses.example.org/"
CODE = "Qm9vLXRoaXMtaXMtYS1yZXNldC1jb2Rl_x-1"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def entry(**overrides: object) -> dict[bytes, bytes]:
    values: dict[str, object] = {
        "event_id": str(uuid.uuid4()),
        "user_id": 7,
        "email": "ada@example.com",
        "full_name": "Ada  Lovelace",
        "code": CODE,
        "expires_at": to_timestamp(NOW + timedelta(minutes=30)),
        "requested_at": to_timestamp(NOW),
        **overrides,
    }
    event = events_pb2.PasswordResetRequested(**values)  # type: ignore[arg-type]
    fields = encode_entry(event.SerializeToString(), event.event_id, PASSWORD_RESET_TYPE)
    return {
        key.encode(): value if isinstance(value, bytes) else str(value).encode()  # type: ignore[union-attr]
        for key, value in fields.items()
    }


def test_the_mail_has_the_code_line_and_the_link() -> None:
    composed = password_reset_kind(BASE_URL).compose(entry(), SENDER, NOW)
    parsed = message_from_bytes(composed.mail.message.as_bytes(), policy=policy.default)
    assert "password" in str(parsed["Subject"]).lower()
    plain = parsed.get_body(preferencelist=("plain",))
    assert plain is not None
    lines = plain.get_content().splitlines()
    assert f"Reset code: {CODE}" in lines
    assert f"https://courses.example.org/password-reset/#code={CODE}" in lines
    assert lines[0] == "Hi Ada Lovelace,"
    assert composed.mail.recipient == "ada@example.com"
    assert composed.mail.kind == "password-reset"
    # What the notifier logs about the mail holds no secret.
    assert CODE not in repr(composed.log_fields)


def test_an_expired_code_is_not_mailed() -> None:
    with pytest.raises(StaleEvent):
        password_reset_kind(BASE_URL).compose(entry(), SENDER, NOW + timedelta(minutes=31))


@pytest.mark.parametrize(
    "overrides",
    [
        {"code": ""},
        {"code": CODE + "\nBcc: evil@example.com"},
        {"code": "short"},
        {"email": "not an address"},
        {"event_id": "../../etc"},
        {"expires_at": None},
    ],
)
def test_malformed_entries_are_refused_without_naming_the_code(
    overrides: dict[str, object],
) -> None:
    values = {key: value for key, value in overrides.items() if value is not None}
    fields = entry(**values)
    if "expires_at" in overrides:
        event = events_pb2.PasswordResetRequested.FromString(fields[b"event"])
        event.ClearField("expires_at")
        fields[b"event"] = event.SerializeToString()
    with pytest.raises(MalformedEvent) as refused:
        decode_reset(fields)
    assert CODE not in str(refused.value)


def test_an_entry_of_another_type_is_refused() -> None:
    fields = entry()
    fields[b"type"] = b"courseplatform.events.v1.CourseCompleted"
    with pytest.raises(MalformedEvent):
        decode_reset(fields)
