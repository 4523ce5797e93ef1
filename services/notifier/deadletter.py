"""The dead-letter stream: entries the notifier gave up on, with the reason, and their replay.

A dead letter is the original entry's fields byte for byte (so `event`, `event_id`, `type` read
as on the source stream) plus `dlq_*` fields saying why. Writing it and acknowledging the source
entry happen in one MULTI, so an entry is never both pending and dead-lettered, nor lost between.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import cast

from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

DLQ_PREFIX = b"dlq_"
FIELD_REASON = "dlq_reason"
FIELD_SOURCE_STREAM = "dlq_source_stream"
FIELD_SOURCE_ID = "dlq_source_id"
FIELD_DELIVERIES = "dlq_deliveries"
FIELD_CONSUMER = "dlq_consumer"
FIELD_FAILED_AT = "dlq_failed_at"

# What XRANGE answers on the notifier's clients (no decode_responses): ids and fields as bytes.
# redis-py types it looser (optional, str or bytes) to cover every client configuration.
StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]


async def dead_letter(
    redis: Redis,
    *,
    source_stream: str,
    dead_letter_stream: str,
    group: str,
    entry_id: str,
    fields: Mapping[bytes, bytes],
    reason: str,
    deliveries: int,
    consumer: str,
    maxlen: int,
) -> str:
    """Move one pending entry to the dead-letter stream; returns the dead letter's id."""
    letter: dict[FieldT, EncodableT] = {
        key: value for key, value in fields.items() if not key.startswith(DLQ_PREFIX)
    }
    letter.update(
        {
            FIELD_REASON: reason,
            FIELD_SOURCE_STREAM: source_stream,
            FIELD_SOURCE_ID: entry_id,
            FIELD_DELIVERIES: str(deliveries),
            FIELD_CONSUMER: consumer,
            FIELD_FAILED_AT: datetime.now(UTC).isoformat(),
        }
    )
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xadd(dead_letter_stream, letter, maxlen=maxlen, approximate=True)
        pipe.xack(source_stream, group, entry_id)
        letter_id, _ = await pipe.execute()
    return letter_id.decode() if isinstance(letter_id, bytes) else str(letter_id)


async def delivery_count(redis: Redis, stream: str, group: str, entry_id: str) -> int:
    """How many times the group delivered this entry (XPENDING), 0 if it is not pending."""
    pending = await redis.xpending_range(stream, group, min=entry_id, max=entry_id, count=1)
    return int(pending[0]["times_delivered"]) if pending else 0


async def replay(
    redis: Redis,
    *,
    dead_letter_stream: str,
    target_stream: str,
    ids: list[str] | None = None,
    maxlen: int,
) -> list[str]:
    """Put dead letters back on the source stream (after fixing what failed); returns new ids.

    Each entry is re-added without its `dlq_*` fields and deleted from the dead-letter stream in
    one MULTI. The notifier's record still says `failed` for those events, which lets them be
    claimed again with a fresh attempt budget; events already mailed stay deduplicated.
    """
    if ids is None:
        entries = cast(StreamEntries, await redis.xrange(dead_letter_stream))
    else:
        entries = []
        for wanted in ids:
            entries.extend(
                cast(StreamEntries, await redis.xrange(dead_letter_stream, wanted, wanted))
            )
    replayed: list[str] = []
    for entry_id, fields in entries:
        original: dict[FieldT, EncodableT] = {
            key: value for key, value in fields.items() if not key.startswith(DLQ_PREFIX)
        }
        if not original:
            continue
        async with redis.pipeline(transaction=True) as pipe:
            pipe.xadd(target_stream, original, maxlen=maxlen, approximate=True)
            pipe.xdel(dead_letter_stream, entry_id)
            new_id, _ = await pipe.execute()
        replayed.append(new_id.decode() if isinstance(new_id, bytes) else str(new_id))
    return replayed
