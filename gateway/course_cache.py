"""The gateway's cache of what every student sees: published courses and the pages of the
published-course list, as ready JSON bytes. One per worker process; docs/gateway.md.

Correctness rules, in the order they are checked:
- It serves only while its change-event reader is in step with the stream (`serving`): synced
  since its last (re)connection and heard from Redis within `fresh_s`. Otherwise every request
  goes to the catalog, and nothing is stored.
- A CourseChanged event (or a write made through this process) drops the course and every
  list page, and marks any fill of them still in flight as stale: an answer read from the
  catalog before the change arrived is never stored after it.
- An entry lives at most `max_age_s` from the moment its catalog read began, whatever the
  events say (a backstop for an event the catalog's relay is late to publish).
- Bounded: at most `max_entries` courses and `max_pages` pages, each side within `max_bytes`
  of JSON, least recently used first out (cachetools).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeAlias, TypeVar

from cachetools import TLRUCache


class Cacheable(Protocol):
    @property
    def size(self) -> int:
        """Bytes it holds (its JSON)."""

    @property
    def version(self) -> int:
        """The course's version (0 for a page): a read that came back late never replaces a
        newer one."""


V = TypeVar("V", bound=Cacheable)
C = TypeVar("C", bound=Cacheable)  # a course's answer
P = TypeVar("P", bound=Cacheable)  # a list page's answer
# ("course", id) or ("page", page, page_size)
Key: TypeAlias = tuple[Hashable, ...]


@dataclass(eq=False)
class Fill:
    """One catalog read that may be stored when it comes back. Other requests for the same
    key may wait for it instead of asking the catalog too (`joined`): at an entry's expiry,
    every concurrent reader of a popular course would otherwise ask at once."""

    key: Key
    started_at: float
    stale: bool = False
    value: Any = None
    _outcome: asyncio.Future[Any] | None = None

    def joined(self) -> asyncio.Future[Any]:
        """Resolves with what this read got, when it is done; fails if it failed."""
        if self._outcome is None:
            self._outcome = asyncio.get_running_loop().create_future()
        return self._outcome

    def _settle(self, failed: bool) -> None:
        if self._outcome is None or self._outcome.done():
            return
        if failed or self.value is None:
            self._outcome.set_exception(FillFailed())
            self._outcome.exception()  # retrieved: nobody has to be waiting
        else:
            self._outcome.set_result(self.value)


class FillFailed(Exception):
    """The read others waited for got no answer to share; each asks for itself."""


@dataclass(frozen=True)
class _Stored(Generic[V]):
    started_at: float
    value: V


class _Tier(Generic[V]):
    """One bounded LRU whose entries expire `max_age_s` after their read began."""

    def __init__(
        self, max_entries: int, max_bytes: int, max_age_s: float, clock: Callable[[], float]
    ) -> None:
        self.max_entries = max_entries
        self._entries: TLRUCache[Key, _Stored[V]] = TLRUCache(
            maxsize=max_bytes,
            ttu=lambda _key, stored, _now: stored.started_at + max_age_s,
            timer=clock,
            getsizeof=lambda stored: max(1, stored.value.size),
        )

    def get(self, key: Key) -> V | None:
        stored = self._entries.get(key)
        return None if stored is None else stored.value

    def put(self, key: Key, started_at: float, value: V) -> bool:
        if value.size > self._entries.maxsize or self.max_entries < 1:
            return False  # larger than the whole budget: not worth evicting everything for
        current = self._entries.get(key)
        if current is not None and current.value.version > value.version:
            return False
        self._entries[key] = _Stored(started_at, value)
        while len(self._entries) > self.max_entries:
            self._entries.popitem()  # the least recently used
        return True

    def drop(self, key: Key) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        self._entries.expire()
        return len(self._entries)

    @property
    def bytes(self) -> int:
        self._entries.expire()
        return int(self._entries.currsize)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    bypasses: int = 0
    stored: int = 0
    refused: int = 0  # fills not stored: stale, reader not in step, or too large
    invalidations: int = 0
    resyncs: int = 0


@dataclass
class PublicCourseCache(Generic[C, P]):
    max_entries: int = 1000
    max_pages: int = 100
    max_bytes: int = 64 * 1024 * 1024
    max_age_s: float = 1.0
    fresh_s: float = 0.75
    clock: Callable[[], float] = time.monotonic
    stats: CacheStats = field(default_factory=CacheStats)

    def __post_init__(self) -> None:
        self._courses: _Tier[C] = _Tier(
            self.max_entries, self.max_bytes, self.max_age_s, self.clock
        )
        self._pages: _Tier[P] = _Tier(self.max_pages, self.max_bytes, self.max_age_s, self.clock)
        self._fills: set[Fill] = set()
        # The read others may join, per key: the latest one not overtaken by a change.
        self._leaders: dict[Key, Fill] = {}
        self._synced = False
        self._heard_at = float("-inf")

    # --- the change-event reader's side ----------------------------------------------------

    def reader_synced(self) -> None:
        """The reader (re)connected and knows where the stream ends: whatever changed while it
        was away is unknown, so start empty, and let no fill from before this moment in."""
        self._forget_everything()
        self._synced = True
        self._heard_at = self.clock()
        self.stats.resyncs += 1

    def reader_asking(self) -> float:
        """The reader is about to read the stream: the moment to pass to `reader_heard`."""
        return self.clock()

    def reader_heard(self, asked_at: float) -> None:
        """A read of the stream asked at `asked_at` came back (its events already applied, or
        none). What it proves is that nothing was missed up to when it was *asked*: an answer
        held up on the way (a Redis or network that hung, then recovered) may be old, and the
        events since are only in the next read. So freshness counts from the asking."""
        self._heard_at = max(self._heard_at, asked_at)

    def reader_lost(self) -> None:
        """The reader's connection failed: stop serving until it has synced again."""
        self._synced = False
        self._forget_everything()

    def course_changed(self, course_id: int) -> None:
        """A course or its lessons changed: its entry and every list page are out of date
        (any course may enter, leave or move on a page)."""
        self.stats.invalidations += 1
        self._courses.drop(("course", course_id))
        self._pages.clear()
        for fill in self._fills:
            if fill.key == ("course", course_id) or fill.key[0] == "page":
                fill.stale = True

    def everything_changed(self) -> None:
        self.stats.invalidations += 1
        self._forget_everything()

    def _forget_everything(self) -> None:
        self._courses.clear()
        self._pages.clear()
        for fill in self._fills:
            fill.stale = True

    @property
    def serving(self) -> bool:
        return self._synced and self.clock() - self._heard_at <= self.fresh_s

    # --- the request side ------------------------------------------------------------------

    def course(self, course_id: int) -> C | None:
        return self._get(self._courses, ("course", course_id))

    def page(self, page: int, page_size: int) -> P | None:
        return self._get(self._pages, ("page", page, page_size))

    def _get(self, tier: _Tier[V], key: Key) -> V | None:
        if not self.serving:
            self.stats.bypasses += 1
            return None
        value = tier.get(key)
        if value is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        return value

    @contextmanager
    def filling_course(self, course_id: int) -> Iterator[Fill]:
        with self._filling(("course", course_id)) as fill:
            yield fill

    @contextmanager
    def filling_page(self, page: int, page_size: int) -> Iterator[Fill]:
        with self._filling(("page", page, page_size)) as fill:
            yield fill

    @contextmanager
    def _filling(self, key: Key) -> Iterator[Fill]:
        """Around a catalog read whose answer may be stored: the read begins now."""
        fill = Fill(key, self.clock())
        self._fills.add(fill)
        self._leaders[key] = fill
        failed = True
        try:
            yield fill
            failed = False
        finally:
            self._fills.discard(fill)
            if self._leaders.get(key) is fill:
                del self._leaders[key]
            fill._settle(failed or fill.stale)

    def course_in_flight(self, course_id: int) -> Fill | None:
        """A read of this course under way that a request may wait for instead of asking the
        catalog itself: only while serving and only one no change has overtaken (a waiter
        then gets what that read got, or asks for itself if a change overtakes it later)."""
        return self._in_flight(("course", course_id))

    def page_in_flight(self, page: int, page_size: int) -> Fill | None:
        return self._in_flight(("page", page, page_size))

    def _in_flight(self, key: Key) -> Fill | None:
        fill = self._leaders.get(key)
        return fill if fill is not None and not fill.stale and self.serving else None

    def store_course(self, fill: Fill, value: C) -> bool:
        """Keep what `fill` read, unless something changed since it began or the reader is
        not in step now; True when stored."""
        return self._store(self._courses, fill, value)

    def store_page(self, fill: Fill, value: P) -> bool:
        return self._store(self._pages, fill, value)

    def _store(self, tier: _Tier[V], fill: Fill, value: V) -> bool:
        fill.value = value  # for those waiting on this read, if no change overtakes it
        if fill.stale or not self.serving or not tier.put(fill.key, fill.started_at, value):
            self.stats.refused += 1
            return False
        self.stats.stored += 1
        return True

    def sizes(self) -> dict[str, int]:
        return {
            "courses": len(self._courses),
            "pages": len(self._pages),
            "course_bytes": self._courses.bytes,
            "page_bytes": self._pages.bytes,
        }
