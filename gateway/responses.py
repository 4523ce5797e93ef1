"""JSON rendering for every gateway answer (orjson: fast, and strict about what it emits)."""

from __future__ import annotations

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
        if value.seconds == 0 and value.nanos == 0:
            return None
        value = value.ToDatetime(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
