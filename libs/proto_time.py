"""datetime <-> google.protobuf.Timestamp, always in UTC."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    # Plain arithmetic: a third of Timestamp.FromDatetime's cost, which adds up on list pages
    # (a page of 20 courses with their lessons carries 440 timestamps).
    delta = value.astimezone(UTC) - _EPOCH
    return Timestamp(seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000)


def set_timestamp(target: Timestamp, value: datetime) -> None:
    """Writes an aware `value` into a message's Timestamp field in place: no Timestamp object
    made and copied per value (list pages set 440 of them)."""
    delta = value - _EPOCH  # aware minus aware: the offset is accounted for
    target.seconds = delta.days * 86_400 + delta.seconds
    target.nanos = delta.microseconds * 1000


def from_timestamp(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)
