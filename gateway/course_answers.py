"""Course representations as ready answers: the JSON bytes with their validators, answered 200
or 304, from the shared cache of published courses or straight from the catalog.

What may be shared: only what a student sees (published courses, the published-course list),
which is the same for every student. An instructor's answers depend on who asks (their own
drafts, their own list) and always come from the catalog; see docs/gateway.md "Course cache".
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from courseplatform.catalog.v1 import catalog_pb2
from fastapi import Header, Request, Response

from gateway.course_cache import Fill, FillFailed, PublicCourseCache
from gateway.pagination import PageParams, page_links
from gateway.validators import (
    CACHE_CONTROL,
    VARY,
    course_etag,
    http_date,
    none_match,
    page_etag,
)
from libs.claims import Claims

# X-Cache: where an answer came from. HIT: the shared cache; MISS: the catalog, and kept for
# the next student; BYPASS: the catalog, not shareable (an instructor, the cache switched off,
# or its event reader not in step with the stream).
HIT, MISS, BYPASS = "HIT", "MISS", "BYPASS"

IfNoneMatch = Annotated[
    list[str] | None,
    Header(
        description="Entity tags from earlier answers (or `*`): a match answers 304, no body",
        examples=['"c42-v7"'],
    ),
]

VALIDATOR_HEADERS = {
    "ETag": {
        "description": 'Strong validator, e.g. `"c42-v7"` (course id and version)',
        "schema": {"type": "string"},
    },
    "Last-Modified": {
        "description": "When the course last changed (HTTP-date)",
        "schema": {"type": "string"},
    },
    "X-Cache": {
        "description": "HIT, MISS or BYPASS: whether the shared cache answered",
        "schema": {"type": "string"},
    },
}
PAGE_HEADERS = {name: VALIDATOR_HEADERS[name] for name in ("ETag", "X-Cache")}
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not Modified: If-None-Match matched; no body, same ETag"}
}


@dataclass(frozen=True)
class CourseAnswer:
    course_id: int
    version: int
    published: bool
    body: bytes
    etag: str
    last_modified: str | None

    @property
    def size(self) -> int:
        return len(self.body)


@dataclass(frozen=True)
class PageAnswer:
    results: bytes  # the JSON array of the page's courses
    count: int
    etag: str
    version: int = 0

    @property
    def size(self) -> int:
        return len(self.results)


def course_answer(course: catalog_pb2.Course, body: bytes) -> CourseAnswer:
    """`body` is the course's JSON. Last-Modified is the latest timestamp the representation
    shows (the course's and its lessons' updated_at)."""
    return CourseAnswer(
        course_id=course.id,
        version=course.version,
        published=course.status == catalog_pb2.COURSE_STATUS_PUBLISHED,
        body=body,
        etag=course_etag(course.id, course.version),
        last_modified=http_date(
            course.updated_at, *(lesson.updated_at for lesson in course.lessons)
        ),
    )


def page_answer(results: bytes, count: int) -> PageAnswer:
    return PageAnswer(results=results, count=count, etag=page_etag(results, count))


CourseCache = PublicCourseCache[CourseAnswer, PageAnswer]


def shared_cache(request: Request, caller: Claims) -> CourseCache | None:
    """The cache this caller's reads may use: students only."""
    cache: CourseCache | None = request.app.state.course_cache
    return cache if cache is not None and caller.is_student else None


@contextmanager
def filling_course(cache: CourseCache | None, course_id: int) -> Iterator[Fill | None]:
    with cache.filling_course(course_id) if cache is not None else nullcontext() as fill:
        yield fill


@contextmanager
def filling_page(cache: CourseCache | None, page: int, page_size: int) -> Iterator[Fill | None]:
    with cache.filling_page(page, page_size) if cache is not None else nullcontext() as fill:
        yield fill


async def joined(fill: Fill | None) -> Any | None:
    """What a read already under way for the same key got, None when there is none or it got
    nothing shareable (then the caller asks the catalog itself)."""
    if fill is None:
        return None
    try:
        # Shielded: a waiter whose client went away must not cancel the others' answer.
        return await asyncio.shield(fill.joined())
    except FillFailed:
        return None


def course_written(request: Request, course_id: int | None) -> None:
    """A write through this process changed a course (None: some course, not known which):
    drop it here at once, before the writer hears back; other processes learn it from the
    event."""
    cache: CourseCache | None = request.app.state.course_cache
    if cache is None:
        return
    if course_id is None:
        cache.everything_changed()
    else:
        cache.course_changed(course_id)


def cache_status(cache: CourseCache | None) -> str:
    return MISS if cache is not None and cache.serving else BYPASS


def _validator_headers(etag: str, last_modified: str | None, source: str) -> dict[str, str]:
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL, "Vary": VARY, "X-Cache": source}
    if last_modified is not None:
        headers["Last-Modified"] = last_modified
    return headers


def course_response(
    answer: CourseAnswer,
    if_none_match: Sequence[str] | None,
    source: str,
    status_code: int = 200,
) -> Response:
    """200 with the course's JSON, or 304 (no body, same validators) when If-None-Match
    matches; a write's answer (status_code 201 or 200) passes None and always has a body."""
    headers = _validator_headers(answer.etag, answer.last_modified, source)
    if if_none_match and none_match(if_none_match, answer.etag):
        return Response(status_code=304, headers=headers)
    return Response(answer.body, status_code, headers, media_type="application/json")


def page_response(
    request: Request,
    params: PageParams,
    answer: PageAnswer,
    if_none_match: Sequence[str] | None,
    source: str,
) -> Response:
    """The contract's page (404 past the end) around the page's cached results; `next` and
    `previous` follow from the request's own URL."""
    next_url, previous_url = page_links(request, params, answer.count)
    headers = _validator_headers(answer.etag, None, source)
    if if_none_match and none_match(if_none_match, answer.etag):
        return Response(status_code=304, headers=headers)
    body = b"".join(
        (
            b'{"count":%d,"next":' % answer.count,
            orjson.dumps(next_url),
            b',"previous":',
            orjson.dumps(previous_url),
            b',"results":',
            answer.results,
            b"}",
        )
    )
    return Response(body, 200, headers, media_type="application/json")
