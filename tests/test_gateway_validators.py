"""gateway/validators.py: entity tags, Last-Modified and If-None-Match per RFC 9110."""

from __future__ import annotations

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from gateway.validators import course_etag, http_date, none_match, page_etag

pytestmark = pytest.mark.unit

TAG = course_etag(42, 7)


def test_a_course_tag_is_strong_and_names_id_and_version() -> None:
    assert TAG == '"c42-v7"'
    assert course_etag(42, 8) != TAG
    assert course_etag(4, 27) != course_etag(42, 7)


@pytest.mark.parametrize(
    "header",
    [
        '"c42-v7"',
        'W/"c42-v7"',  # weak comparison: W/ ignored
        '"c1-v1", "c42-v7"',
        '"c1-v1",W/"c42-v7" , "c3-v3"',
        "*",
        " * ",
        'bogus, "c42-v7"',  # a member that is no entity-tag is skipped, the rest still count
    ],
)
def test_matching_if_none_match(header: str) -> None:
    assert none_match([header], TAG)


@pytest.mark.parametrize(
    "header",
    [
        '"c42-v6"',
        'W/"c42-v6", "c41-v7"',
        "c42-v7",  # not quoted: no entity-tag
        '"c42-v7',
        "",
        ",,",
        '"C42-V7"',  # opaque tags compare octet by octet
    ],
)
def test_non_matching_if_none_match(header: str) -> None:
    assert not none_match([header], TAG)


def test_every_header_line_counts_and_none_matches_nothing() -> None:
    assert none_match(['"a"', '"c42-v7"'], TAG)
    assert not none_match([], TAG)
    assert none_match(['"c42-v7"'], "W/" + TAG)


def test_last_modified_is_the_latest_timestamp_as_an_http_date() -> None:
    course = Timestamp(seconds=1_764_000_000, nanos=500)
    lesson = Timestamp(seconds=1_764_000_123)
    assert http_date(course, lesson, Timestamp()) == "Mon, 24 Nov 2025 16:02:03 GMT"
    assert http_date(Timestamp()) is None


def test_a_page_tag_follows_its_results_and_count() -> None:
    assert page_etag(b"[1,2]", 2) == page_etag(b"[1,2]", 2)
    assert page_etag(b"[1,2]", 2) != page_etag(b"[1,2]", 3)
    assert page_etag(b"[1,2]", 2) != page_etag(b"[1,3]", 2)
    assert page_etag(b"[]", 0).startswith('"p-')
