"""Structured logs: one JSON object per line, with the request id of the call being served
(coloured key=value lines instead when stderr is a terminal and LOG_JSON is not set).

One policy for every process, applied to structlog events and stdlib records alike:
- exceptions carry their type, message and traceback frames, never frame locals (locals held
  the caller's claims and bearer token);
- secrets are redacted by one processor (`redact`): values of keys that name a secret, and
  anything shaped like a bearer token or a JWT inside any string;
- a line is bounded: long strings are cut and a traceback keeps at most `MAX_FRAMES` frames.

Cheap at INFO (one access line per request and per RPC): JSON by orjson, the timestamp's
seconds formatted once per second, the redaction regex run only on text that could hold a
secret, and the write itself done by one background thread (`_LineWriter`), never on the event
loop; what is queued is written out at exit.
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import re
import signal
import sys
import threading
import time
from typing import IO, Any, cast

import orjson
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


# Keys seen so far and whether they name a secret: a process logs a few dozen distinct keys.
_SECRET_KEY_CACHE: dict[str, bool] = {}
_SECRET_KEY_CACHE_MAX = 4096


def _is_secret_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    known = _SECRET_KEY_CACHE.get(key)
    if known is None:
        known = key.lower().replace("-", "_") in SECRET_KEYS
        if len(_SECRET_KEY_CACHE) < _SECRET_KEY_CACHE_MAX:
            _SECRET_KEY_CACHE[key] = known
    return known


def _may_hold_secret(text: str) -> bool:
    """False only when `_SECRET_TEXT` cannot match: both of its forms need these letters."""
    return "eyJ" in text or "bearer" in text.lower()


def redact_text(text: str) -> str:
    return _SECRET_TEXT.sub(REDACTED, text) if _may_hold_secret(text) else text


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


_PLAIN = frozenset({int, float, bool, type(None)})


def redact(_: object, __: str, event: EventDict) -> EventDict:
    """The one redaction processor: runs last before rendering, over every field. Numbers and
    short text without a secret's shape (an access line's every field) pass as they are."""
    cleaned: EventDict = {}
    for key, value in event.items():
        if _is_secret_key(key):
            cleaned[key] = REDACTED
        elif type(value) in _PLAIN or (
            type(value) is str and len(value) <= MAX_STRING_CHARS and not _may_hold_secret(value)
        ):
            cleaned[key] = value
        else:
            cleaned[key] = _clean(value)
    return cleaned


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


class _Timestamp:
    """`timestamp`: ISO 8601 UTC with microseconds, like TimeStamper(fmt="iso", utc=True), with
    the date and time of day formatted once per second instead of on every line."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, _: object, __: str, event: EventDict) -> EventDict:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        event["timestamp"] = f"{self._prefix}.{int((now - second) * 1_000_000):06d}Z"
        return event


def _render_json(_: object, __: str, event: EventDict) -> bytes:
    """One JSON line (orjson); values orjson refuses (integers past 64 bits) fall back to json."""
    try:
        return orjson.dumps(event, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return (json.dumps(event, default=repr) + "\n").encode()


def _render_json_text(logger: object, name: str, event: EventDict) -> str:
    """The same line as text, for stdlib's formatter (which wants a str, without the newline)."""
    return _render_json(logger, name, event)[:-1].decode()


class _LineWriter:
    """Writes log lines to a stream from one background thread, so a full pipe or a slow
    terminal never blocks the event loop; lines queued together go out in one write.

    Lines keep their order (one queue for structlog and stdlib records alike). `close` (at
    exit) writes out everything queued; a line logged after that is written directly.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def write(self, line: bytes) -> None:
        if self._closed:
            self._write(line)
        else:
            self._queue.put(line)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._write(b"".join(line for line in batch if line is not None))
            if None in batch:
                return

    def _write(self, data: bytes) -> None:
        if not data:
            return
        try:
            buffer = getattr(self._stream, "buffer", None)
            if buffer is not None:
                self._stream.flush()  # whatever was printed as text first
                buffer.write(data)
                buffer.flush()
            else:
                self._stream.write(data.decode("utf-8", "replace"))
                self._stream.flush()
        except (OSError, ValueError):
            pass  # stderr closed or gone: nothing left to tell


_writers: dict[int, _LineWriter] = {}


def _writer_for(stream: IO[str]) -> _LineWriter:
    """One writer (and thread) per stream, however often logging is configured."""
    writer = _writers.get(id(stream))
    if writer is None or writer._stream is not stream:
        writer = _writers[id(stream)] = _LineWriter(stream)
    return writer


class _QueuedLogger:
    """structlog's final logger: hands the rendered line to the background writer."""

    def __init__(self, writer: _LineWriter) -> None:
        self._writer = writer

    def msg(self, message: bytes | str) -> None:
        if isinstance(message, str):
            message = (message + "\n").encode("utf-8", "replace")
        self._writer.write(message)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


class _QueuedHandler(logging.Handler):
    """stdlib records, formatted by the caller (the formatter runs the same policy), written by
    the background writer."""

    def __init__(self, writer: _LineWriter) -> None:
        super().__init__()
        self._writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._writer.write((self.format(record) + "\n").encode("utf-8", "replace"))
        except Exception:  # logging must never raise into the caller
            self.handleError(record)


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
    console: list[Processor] = [
        _exception_as_text,
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
    ]
    renderers: list[Processor] = [_render_json] if as_json else console
    text_renderers: list[Processor] = [_render_json_text] if as_json else console
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        _add_request_id,
        add_trace_ids,
        structlog.processors.add_log_level,
        _Timestamp(),
    ]
    writer = _writer_for(sys.stderr)
    final_logger = _QueuedLogger(writer)
    structlog.configure(
        processors=[*shared, _format_exceptions, redact, *renderers],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=lambda *_: final_logger,
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # Route stdlib logging (uvicorn, grpc, sqlalchemy warnings) through the same policy.
    handler = _QueuedHandler(writer)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _format_exceptions,
                redact,
                *text_renderers,
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, _name_uvicorn_logger],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def flush_logs() -> None:
    """Write out every queued line now (later lines are written directly)."""
    for writer in list(_writers.values()):
        writer.close()


def _terminate_after_flushing(signum: int, _: object) -> None:
    signal.signal(signum, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    flush_logs()
    signal.raise_signal(signum)  # the exit status stays "killed by SIGTERM"


def flush_logs_on_sigterm() -> None:
    """For processes served by uvicorn (gateway, notifier): it re-raises the SIGTERM it handled
    once its graceful shutdown is done, after restoring the handler it found, and the default
    action ends the process without atexit, so the queued lines would be lost. This handler
    writes the queue out first, then terminates as the default would. Only where nothing else
    handles SIGTERM (the gRPC services stop through their own handler and exit normally)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate_after_flushing)


def get_logger(name: str | None = None) -> FilteringBoundLogger:
    # structlog types get_logger as Any; it proxies to the wrapper_class configure_logging sets.
    return cast(FilteringBoundLogger, structlog.get_logger(name))
