"""Timestamps on the wire: datetime -> protobuf Timestamp (services) and Timestamp -> the contract's
ISO 8601 text (gateway), both written for speed, checked against the library conversions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from gateway.responses import iso
from libs.proto_time import from_timestamp, to_timestamp

pytestmark = pytest.mark.unit

MOMENTS = [
    datetime(2026, 11, 27, 10, 15, 0, 123456, tzinfo=UTC),
    datetime(2026, 1, 1, tzinfo=UTC),  # zero microseconds still print as .000000
    datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),  # before the epoch
    datetime(1900, 2, 28, 12, 0, 0, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 3, 1, 1, 2, 3, 4, tzinfo=timezone(timedelta(hours=5, minutes=30))),
]


def reference(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


@pytest.mark.parametrize("value", MOMENTS, ids=str)
def test_to_timestamp_matches_protobuf_and_round_trips(value: datetime) -> None:
    stamp = to_timestamp(value)
    assert stamp == reference(value)
    assert from_timestamp(stamp) == value


@pytest.mark.parametrize("value", MOMENTS, ids=str)
def test_iso_of_a_timestamp_is_the_contract_format_in_utc(value: datetime) -> None:
    expected = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert iso(reference(value)) == expected
    assert iso(value) == expected


def test_unset_values_are_null() -> None:
    assert to_timestamp(None) is None
    assert iso(None) is None
    assert iso(Timestamp()) is None


def test_iso_example_from_the_contract() -> None:
    stamp = reference(datetime(2026, 11, 27, 10, 15, 0, 123456, tzinfo=UTC))
    assert iso(stamp) == "2026-11-27T10:15:00.123456Z"
