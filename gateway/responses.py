"""JSON rendering for every gateway answer (orjson: fast, and strict about what it emits)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi.responses import JSONResponse
from google.protobuf.timestamp_pb2 import Timestamp


class OrjsonResponse(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def iso(value: Timestamp | datetime | None) -> str | None:
    """Contract timestamps: ISO 8601, UTC, microseconds, `Z` (2026-11-27T10:15:00.123456Z)."""
    if value is None:
        return None
    if isinstance(value, Timestamp):
        seconds, nanos = value.seconds, value.nanos
        if seconds == 0 and nanos == 0:
            return None
        # Straight from the fields (no datetime): this runs twice per lesson on list pages.
        t = time.gmtime(seconds)
        return (
            f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{nanos // 1000:06d}Z"
        )
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
