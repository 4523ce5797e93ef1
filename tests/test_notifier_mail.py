"""Pure units of the notifier: decoding a stream entry, composing the email, the retry policy."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from libs.settings import Settings
from libs.streams import COURSE_COMPLETED_TYPE, FIELD_EVENT, FIELD_EVENT_ID, FIELD_TYPE
from services.notifier import lease
from services.notifier.events import CourseCompletion, MalformedEvent, decode_completion
from services.notifier.mail import compose, message_id_for
from services.notifier.usecases import RetryPolicy
from tests.notifier_support import completion_event, stream_entry

pytestmark = pytest.mark.unit

SENDER = "Course Platform <no-reply@courseplatform.example>"


def fields_of(event: object, **overrides: bytes) -> dict[bytes, bytes]:
    fields = {
        key.encode(): value if isinstance(value, bytes) else value.encode()
        for key, value in stream_entry(event).items()  # type: ignore[arg-type]
    }
    fields.update({key.encode(): value for key, value in overrides.items()})
    return fields


def completion(**overrides: object) -> CourseCompletion:
    values: dict[str, object] = {
        "event_id": "0b6f5a0e-6a43-4c3e-9a0b-2b1f6c1d9e11",
        "enrollment_id": 1,
        "student_id": 2,
        "student_email": "ada@example.com",
        "student_full_name": "Ada Lovelace",
        "course_id": 3,
        "course_title": "Analytical Engines",
        "completed_at": datetime(2026, 11, 27, 10, 15, tzinfo=UTC),
    }
    values.update(overrides)
    return CourseCompletion(**values)  # type: ignore[arg-type]


def reparsed(message: EmailMessage) -> EmailMessage:
    """What a mail client sees: the message serialised and parsed back."""
    parsed = message_from_bytes(message.as_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


# --- decoding -----------------------------------------------------------------------------


def test_decode_entry_reads_every_field_the_mail_needs() -> None:
    event = completion_event()
    decoded = decode_completion(fields_of(event))
    assert decoded.event_id == event.event_id
    assert decoded.student_email == event.student_email
    assert decoded.student_full_name == event.student_full_name
    assert decoded.course_title == event.course_title
    assert decoded.course_id == event.course_id
    assert decoded.completed_at == datetime(2026, 11, 27, 10, 15, tzinfo=UTC)


def test_decode_entry_accepts_entries_without_the_clear_text_fields() -> None:
    event = completion_event()
    assert decode_completion({FIELD_EVENT.encode(): event.SerializeToString()}).event_id == (
        event.event_id
    )


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({b"hello": b"world"}, "no 'event' field"),
        ({FIELD_EVENT.encode(): b"\xff\xff\xff\xff"}, "not a CourseCompleted protobuf"),
        (
            {FIELD_EVENT.encode(): b"", FIELD_TYPE.encode(): b"courseplatform.events.v1.Other"},
            "unexpected type",
        ),
    ],
)
def test_undecodable_entries_are_malformed(fields: dict[bytes, bytes], reason: str) -> None:
    with pytest.raises(MalformedEvent, match=reason):
        decode_completion(fields)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"event_id": ""}, "event_id"),
        ({"event_id": "../../etc/passwd"}, "event_id"),
        ({"event_id": "x" * 200}, "event_id"),
        ({"student_email": ""}, "student_email"),
        ({"student_email": "not-an-address"}, "student_email"),
        ({"student_email": "ada@example.com\r\nBcc: eve@example.com"}, "student_email"),
        ({"student_full_name": "   "}, "student_full_name"),
        ({"course_title": ""}, "course_title"),
    ],
)
def test_events_missing_what_the_mail_needs_are_malformed(
    overrides: dict[str, str], reason: str
) -> None:
    event = completion_event(**overrides)
    with pytest.raises(MalformedEvent, match=reason):
        decode_completion(fields_of(event))


def test_clear_text_event_id_must_match_the_event() -> None:
    event = completion_event()
    with pytest.raises(MalformedEvent, match="differs"):
        decode_completion(fields_of(event, **{FIELD_EVENT_ID: b"another-id"}))


def test_type_field_names_the_event() -> None:
    event = completion_event()
    fields = fields_of(event)
    assert fields[FIELD_TYPE.encode()] == COURSE_COMPLETED_TYPE.encode()
    assert decode_completion(fields).event_id == event.event_id


# --- composing ----------------------------------------------------------------------------


def test_subject_recipient_and_bodies() -> None:
    message = reparsed(compose(completion(), SENDER))
    assert message["Subject"] == "Congratulations! You completed Analytical Engines"
    assert message["To"].addresses[0].addr_spec == "ada@example.com"
    assert message["To"].addresses[0].display_name == "Ada Lovelace"
    assert message["From"] == SENDER
    assert message["Auto-Submitted"] == "auto-generated"
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    assert plain.get_content().startswith("Hi Ada Lovelace,\n")
    assert '"Analytical Engines" on 27 November 2026' in plain.get_content()
    assert "<p>Hi Ada Lovelace,</p>" in html.get_content()
    assert message.get_content_type() == "multipart/alternative"


def test_message_id_is_derived_from_the_event_id() -> None:
    first = compose(completion(), SENDER)
    again = compose(completion(), SENDER)
    other = compose(completion(event_id="another-event"), SENDER)
    assert first["Message-ID"] == again["Message-ID"]
    assert first["Message-ID"] != other["Message-ID"]
    expected = "<0b6f5a0e-6a43-4c3e-9a0b-2b1f6c1d9e11@courseplatform.example>"
    assert str(reparsed(first)["Message-ID"]).strip() == expected
    assert message_id_for("abc", "no-domain") == "<abc@courseplatform.local>"


def test_user_text_is_escaped_in_html_and_cannot_inject_headers() -> None:
    hostile = completion(
        student_full_name='Eve <script>alert("x")</script> & Co',
        course_title="Hacking <b>101</b>",
    )
    message = reparsed(compose(hostile, SENDER))
    html = message.get_body(preferencelist=("html",))
    plain = message.get_body(preferencelist=("plain",))
    assert html is not None and plain is not None
    assert "<script>" not in html.get_content()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co" in html.get_content()
    assert "Hacking &lt;b&gt;101&lt;/b&gt;" in html.get_content()
    assert 'Hi Eve <script>alert("x")</script> & Co,' in plain.get_content()
    assert message["Subject"] == "Congratulations! You completed Hacking <b>101</b>"


def test_newlines_in_names_and_titles_stay_inside_their_header() -> None:
    event = completion_event(
        student_full_name="Ada\r\nBcc: eve@example.com",
        course_title="Engines\nX-Injected: yes",
    )
    decoded = decode_completion(fields_of(event))
    raw = completion(student_full_name=event.student_full_name, course_title=event.course_title)
    for source in (decoded, raw):  # decoding normalises; composing alone is safe too
        message = reparsed(compose(source, SENDER))
        assert message["Bcc"] is None
        assert message["X-Injected"] is None
        assert message["Subject"] == "Congratulations! You completed Engines X-Injected: yes"
        assert message["To"].addresses[0].display_name == "Ada Bcc: eve@example.com"


def test_non_ascii_names_and_titles_survive() -> None:
    message = reparsed(
        compose(completion(student_full_name="Zoë Ångström", course_title="Café ☕ basics"), SENDER)
    )
    assert message["Subject"] == "Congratulations! You completed Café ☕ basics"
    assert message["To"].addresses[0].display_name == "Zoë Ångström"
    plain = message.get_body(preferencelist=("plain",))
    assert plain is not None and "Hi Zoë Ångström," in plain.get_content()


# --- retry policy -------------------------------------------------------------------------


def test_backoff_grows_exponentially_within_jitter() -> None:
    policy_ = RetryPolicy(max_attempts=5, retries_per_delivery=3, backoff_s=1.0)
    for retry in range(3):
        assert 0.8 * 2**retry <= policy_.delay(retry) <= 1.2 * 2**retry


def test_default_reclaim_and_lease_hand_a_dead_notifiers_mail_over_within_30_s() -> None:
    # The declared defaults, whatever this machine's environment sets.
    idle_ms = Settings.model_fields["notifier_reclaim_idle_ms"].default
    lease_s = Settings.model_fields["notifier_lease_s"].default
    assert (idle_ms, lease_s) == (15_000, 10.0)
    # The lease runs out before the entry turns reclaimable, so the first reclaim claims it:
    # 15 s idle + at most one 3.75 s reclaim poll after the sender's last heartbeat.
    assert lease_s * 1000 <= idle_ms
    assert lease.takeover_bound_s(idle_ms, lease_s) == pytest.approx(18.75)
    # What is left of 30 s covers the new owner's SMTP attempt on a healthy server.
    assert 30 - lease.takeover_bound_s(idle_ms, lease_s) >= 10
    # Renewed three times per lease, so two missed renewals do not let a live claim lapse.
    assert lease.renew_interval_s(lease_s) * 2 < lease_s


def test_a_lease_longer_than_the_idle_time_costs_reclaim_rounds() -> None:
    # Each reclaim that finds the lease still running resets the entry's idle time.
    assert lease.takeover_bound_s(1000, 2.5) == pytest.approx(3 * (1.0 + 0.25))
    assert lease.takeover_bound_s(60_000, 10.0) == pytest.approx(60 + 5)
    assert lease.reclaim_poll_ms(200) == 100  # never a busy loop
