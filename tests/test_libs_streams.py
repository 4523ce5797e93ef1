"""libs/streams.py: an entry written with encode_entry reads back the same through real Redis,
and a malformed one still yields what it has (so it can be logged and dead-lettered)."""

from __future__ import annotations

from redis.asyncio import Redis

from libs.streams import COURSE_COMPLETED_TYPE, StreamEntry, decode_entry, encode_entry


async def test_an_encoded_entry_decodes_to_the_same_fields(redis: Redis) -> None:
    stream = "test.streams.round_trip"
    payload = b"\x00\xffbinary protobuf"
    entry_id = await redis.xadd(stream, encode_entry(payload, "evt-1", COURSE_COMPLETED_TYPE))
    [(read_id, fields)] = await redis.xrange(stream)
    assert read_id == entry_id
    assert decode_entry(fields) == StreamEntry(
        event=payload, event_id="evt-1", type=COURSE_COMPLETED_TYPE
    )
    await redis.delete(stream)


async def test_missing_and_undecodable_fields(redis: Redis) -> None:
    stream = "test.streams.malformed"
    await redis.xadd(stream, {"event_id": b"\xffbad-\xfe"})
    [(_, fields)] = await redis.xrange(stream)
    entry = decode_entry(fields)
    assert entry.event is None and entry.type is None
    assert entry.event_id == "\ufffdbad-\ufffd"
    await redis.delete(stream)
