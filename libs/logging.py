"""Structured logs: one JSON object per line, with the request id of the call being served
(coloured key=value lines instead when stderr is a terminal and LOG_JSON is not set).

One policy for every process, applied to structlog events and stdlib records alike:
- exceptions carry their type, message and traceback frames, never frame locals (locals held
  the caller's claims and bearer token);
- secrets are redacted by one processor (`redact`): values of keys that name a secret, and
  anything shaped like a bearer token or a JWT inside any string;
- a line is bounded: long strings are cut and a traceback keeps at most `MAX_FRAMES` frames.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, cast

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, FilteringBoundLogger, Processor

from libs import call_context
from libs.trace_ids import add_trace_ids

REDACTED = "[redacted]"
# Keys whose values are secrets wherever they appear (compared lower-cased, "-" as "_").
SECRET_KEYS = frozenset(
    {
        "authorization",
        "token",
        "access",
        "access_token",
        "refresh",
        "refresh_token",
        "password",
        "password_confirm",
        "current_password",
        "new_password",
        "code",
        "reset_code",
        "secret",
        "cookie",
        "set_cookie",
        "smtp_password",
    }
)
# A bearer credential or a JWT (three base64url parts, the first one a JSON object) in any text.
_SECRET_TEXT = re.compile(
    r"(?i:bearer)\s+[A-Za-z0-9._~+/=-]+"
    r"|eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*)?"
)
# Bounds that keep one line small (the old unbounded lines reached ~26 KB).
MAX_STRING_CHARS = 1000
MAX_FRAMES = 12
MAX_ITEMS = 50


def _add_request_id(_: object, __: str, event: EventDict) -> EventDict:
    request_id = call_context.request_id.get()
    if request_id and "request_id" not in event:
        event["request_id"] = request_id
    return event


def _is_secret_key(key: object) -> bool:
    return isinstance(key, str) and key.lower().replace("-", "_") in SECRET_KEYS


def redact_text(text: str) -> str:
    return _SECRET_TEXT.sub(REDACTED, text)


def _clean(value: Any, depth: int = 0) -> Any:
    """`value` with secrets redacted and sizes bounded, recursively through dicts and lists."""
    if isinstance(value, str):
        text = redact_text(value)
        if len(text) > MAX_STRING_CHARS:
            cut = len(text) - MAX_STRING_CHARS
            text = f"{text[:MAX_STRING_CHARS]}...[{cut} more chars]"
        return text
    if depth > 6:
        return "[nested too deep]"
    if isinstance(value, dict):
        items = list(value.items())[:MAX_ITEMS]
        return {
            key: REDACTED if _is_secret_key(key) else _clean(item, depth + 1) for key, item in items
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(item, depth + 1) for item in list(value)[:MAX_ITEMS]]
    if value is None or isinstance(value, bool | int | float):
        return value
    return _clean(repr(value), depth)  # anything else is logged as its (redacted) repr


def redact(_: object, __: str, event: EventDict) -> EventDict:
    """The one redaction processor: runs last before rendering, over every field."""
    return {key: REDACTED if _is_secret_key(key) else _clean(value) for key, value in event.items()}


# Type, message and frames (file, line, function) of an exception, without locals.
_format_exceptions = structlog.processors.ExceptionRenderer(
    ExceptionDictTransformer(show_locals=False, max_frames=MAX_FRAMES, use_rich=False)
)


def _exception_as_text(_: object, __: str, event: EventDict) -> EventDict:
    """For the console renderer (which wants text): the structured, already redacted and
    bounded exception of `_format_exceptions` as a traceback, innermost cause first."""
    stack = event.get("exception")
    if not isinstance(stack, list):
        return event
    lines: list[str] = []
    for position, error in enumerate(reversed(stack)):
        if not isinstance(error, dict):
            continue
        if position:
            lines.append("")
            lines.append("The above exception caused (or was raised while handling) this one:")
        lines.append("Traceback (most recent call last):")
        for frame in error.get("frames") or []:
            if isinstance(frame, dict):
                where = f'  File "{frame.get("filename")}", line {frame.get("lineno")}'
                lines.append(f"{where}, in {frame.get('name')}")
        lines.append(f"{error.get('exc_type')}: {error.get('exc_value')}")
    event["exception"] = "\n".join(lines)
    return event


def _name_uvicorn_logger(_: object, __: str, event: EventDict) -> EventDict:
    # uvicorn logs everything, "Started server process" included, as `uvicorn.error`: a normal
    # start printed a dozen lines matching "error". The name says nothing, so it is dropped.
    if event.get("logger") == "uvicorn.error":
        event["logger"] = "uvicorn"
    return event


def use_json(json: bool | None) -> bool:
    """JSON lines, unless not asked for explicitly and stderr is a terminal (a person reads it)."""
    if json is not None:
        return json
    return not sys.stderr.isatty()


def configure_logging(service: str, level: str = "INFO", json: bool | None = None) -> None:
    """`json`: LOG_JSON; None picks by the terminal (`use_json`). Either renderer sees events
    only after the same exception and redaction processors."""
    # The console renderer gets its exception as text made from the redacted structured one,
    # never from exc_info (its own formatter would print unbounded frames, with locals if rich
    # is installed).
    as_json = use_json(json)
    renderers: list[Processor] = (
        [structlog.processors.JSONRenderer()]
        if as_json
        else [_exception_as_text, structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    )
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        _add_request_id,
        add_trace_ids,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, _format_exceptions, redact, *renderers],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # Route stdlib logging (uvicorn, grpc, sqlalchemy warnings) through the same policy.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _format_exceptions,
                redact,
                *renderers,
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, _name_uvicorn_logger],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def get_logger(name: str | None = None) -> FilteringBoundLogger:
    # structlog types get_logger as Any; it proxies to the wrapper_class configure_logging sets.
    return cast(FilteringBoundLogger, structlog.get_logger(name))
