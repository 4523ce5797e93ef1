"""HTTP validators of course representations (RFC 9110 §8.8, §13.1.2): ETag, Last-Modified,
and the If-None-Match evaluation that turns a GET into a 304.

Pure functions over strings and timestamps: the routes pick the tag, these say what it looks
like and whether a request's condition holds.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from email.utils import formatdate

from google.protobuf.timestamp_pb2 import Timestamp

# Answers that depend on the caller's token: a browser may keep them but must ask again each
# time (no heuristic freshness from Last-Modified), and no shared cache may keep them.
CACHE_CONTROL = "private, no-cache"
VARY = "Authorization"

# entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; etagc = %x21 / %x23-7E / obs-text
_ENTITY_TAG = re.compile(r'\s*(W/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)')


def course_etag(course_id: int, version: int) -> str:
    """Strong: one version of a course has exactly one representation (every change of the
    course or its lessons moves `version`)."""
    return f'"c{course_id}-v{version}"'


def page_etag(results: bytes, count: int) -> str:
    """A list page's tag, from what its body is made of. The rest of the body (`next`,
    `previous`) follows from the count and the request's own URL, and a tag is scoped to that
    URL, so the tag can be strong."""
    digest = hashlib.blake2b(results, digest_size=12)
    digest.update(b"/%d" % count)
    return f'"p-{digest.hexdigest()}"'


def http_date(*timestamps: Timestamp) -> str | None:
    """Last-Modified: the latest of `timestamps` as an IMF-fixdate (second precision), None
    when none is set."""
    seconds = max((ts.seconds for ts in timestamps if ts.seconds or ts.nanos), default=None)
    return None if seconds is None else formatdate(seconds, usegmt=True)


def none_match(header_values: Iterable[str], etag: str) -> bool:
    """Whether If-None-Match (every header line of it) matches `etag`: `*` matches any
    current representation, otherwise the weak comparison (a `W/` prefix on either side is
    ignored). Members that are not entity-tags are skipped; an absent header never matches."""
    opaque = etag.removeprefix("W/")
    for value in header_values:
        if value.strip() == "*":
            return True
        position = 0
        while position < len(value):
            found = _ENTITY_TAG.match(value, position)
            if found is None:
                # Not an entity-tag: skip this list member, keep reading the others.
                comma = value.find(",", position)
                if comma < 0:
                    break
                position = comma + 1
                continue
            if found.group(2) == opaque:
                return True
            position = found.end()
    return False
