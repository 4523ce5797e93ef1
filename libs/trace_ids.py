"""The structlog processor that puts the current trace and span ids next to `request_id`.

Its own module, importing only the OpenTelemetry API, so libs/logging.py stays light; with
tracing off there is no current span and nothing is added.
"""

from __future__ import annotations

from opentelemetry import trace
from structlog.typing import EventDict


def add_trace_ids(_: object, __: str, event: EventDict) -> EventDict:
    context = trace.get_current_span().get_span_context()
    if context.is_valid and "trace_id" not in event:
        event["trace_id"] = format(context.trace_id, "032x")
        event["span_id"] = format(context.span_id, "016x")
    return event
