"""gateway/course_cache.py's rules on a controlled clock: when it serves, what an invalidation
does to a read still in flight, the age backstop, the bounds. The same rules run against real
Redis, catalog and gateway processes in tests/test_gateway_course_cache*.py."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from gateway.course_cache import FillFailed, PublicCourseCache

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Answer:
    name: str
    version: int = 1
    size: int = 10


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def synced_cache(clock: Clock, **options: object) -> PublicCourseCache[Answer, Answer]:
    settings: dict[str, object] = {"max_age_s": 1.0, "fresh_s": 0.75, **options}
    cache: PublicCourseCache[Answer, Answer] = PublicCourseCache(clock=clock, **settings)
    cache.reader_synced()
    return cache


def fill_course(cache: PublicCourseCache[Answer, Answer], course_id: int, answer: Answer) -> bool:
    with cache.filling_course(course_id) as fill:
        return cache.store_course(fill, answer)


def test_nothing_is_served_or_stored_before_the_reader_has_synced() -> None:
    clock = Clock()
    cache: PublicCourseCache[Answer, Answer] = PublicCourseCache(clock=clock)
    assert not cache.serving
    assert not fill_course(cache, 1, Answer("a"))
    cache.reader_synced()
    assert fill_course(cache, 1, Answer("a"))
    assert cache.course(1) == Answer("a")


def test_it_stops_serving_when_the_reader_is_not_heard_from_and_resumes_when_it_is() -> None:
    clock = Clock()
    cache = synced_cache(clock, max_age_s=60.0)
    assert fill_course(cache, 1, Answer("a"))
    clock.now += 0.5
    cache.reader_heard(clock.now)
    clock.now += 0.7
    assert cache.course(1) == Answer("a")
    clock.now += 0.1  # 0.8 s since the reader was last heard from
    assert cache.course(1) is None
    assert not fill_course(cache, 2, Answer("b"))
    # An XREAD that comes back late still continues from where the reader was: no gap.
    cache.reader_heard(clock.now)
    assert cache.serving


def test_an_answer_held_up_on_the_way_does_not_make_the_cache_serve() -> None:
    """A Redis that hung and recovers delivers the empty answer to a read asked before the
    hang: it says nothing about the events since, so the cache keeps bypassing until a read
    asked after them has come back (the next one, which brings them)."""
    clock = Clock()
    cache = synced_cache(clock, max_age_s=60.0)
    assert fill_course(cache, 1, Answer("old"))
    asked_before_the_hang = cache.reader_asking()
    clock.now += 1.5  # the hang; a change was published meanwhile
    cache.reader_heard(asked_before_the_hang)
    assert not cache.serving
    asked_now = cache.reader_asking()
    cache.course_changed(1)  # the next read brings the event
    cache.reader_heard(asked_now)
    assert cache.serving
    assert cache.course(1) is None


def test_a_lost_reader_forgets_everything_and_a_resync_starts_empty() -> None:
    clock = Clock()
    cache = synced_cache(clock)
    fill_course(cache, 1, Answer("a"))
    cache.reader_lost()
    assert not cache.serving
    cache.reader_synced()
    assert cache.course(1) is None


def test_a_read_overtaken_by_its_course_changing_is_not_stored() -> None:
    clock = Clock()
    cache = synced_cache(clock)
    with cache.filling_course(1) as old_read, cache.filling_course(2) as other:
        cache.course_changed(1)  # the event arrives while the catalog answer is on its way
        assert not cache.store_course(old_read, Answer("v5", version=5))
        assert cache.store_course(other, Answer("other"))
    assert cache.course(1) is None
    assert cache.course(2) == Answer("other")
    assert fill_course(cache, 1, Answer("v6", version=6))


def test_a_change_of_any_course_drops_every_page_and_page_reads_in_flight() -> None:
    clock = Clock()
    cache = synced_cache(clock)
    with cache.filling_page(1, 20) as fill:
        assert cache.store_page(fill, Answer("page 1"))
    with cache.filling_page(2, 20) as in_flight:
        cache.course_changed(99)
        assert not cache.store_page(in_flight, Answer("page 2"))
    assert cache.page(1, 20) is None


def test_a_resync_marks_reads_in_flight_stale() -> None:
    clock = Clock()
    cache = synced_cache(clock)
    with cache.filling_course(1) as fill:
        cache.reader_lost()
        cache.reader_synced()
        assert not cache.store_course(fill, Answer("from before the gap"))


def test_a_late_older_version_never_replaces_a_newer_one() -> None:
    clock = Clock()
    cache = synced_cache(clock)
    with cache.filling_course(1) as slow, cache.filling_course(1) as fast:
        assert cache.store_course(fast, Answer("v6", version=6))
        assert not cache.store_course(slow, Answer("v5", version=5))
    assert cache.course(1) == Answer("v6", version=6)


def test_an_entry_expires_max_age_after_its_read_began() -> None:
    clock = Clock()
    cache = synced_cache(clock)
    with cache.filling_course(1) as fill:
        clock.now += 0.4  # the catalog took 0.4 s to answer
        cache.reader_heard(clock.now)
        assert cache.store_course(fill, Answer("a"))
    clock.now += 0.59
    cache.reader_heard(clock.now)
    assert cache.course(1) == Answer("a")
    clock.now += 0.02  # 1.01 s after the read began
    cache.reader_heard(clock.now)
    assert cache.course(1) is None


def test_entries_are_bounded_in_number_and_bytes_least_recently_used_first() -> None:
    clock = Clock()
    cache = synced_cache(clock, max_entries=3, max_bytes=100)
    for course_id in (1, 2, 3):
        fill_course(cache, course_id, Answer(str(course_id)))
    assert cache.course(1) is not None  # 1 is now the most recently used
    fill_course(cache, 4, Answer("4"))
    assert cache.course(2) is None
    assert [cache.course(n) is not None for n in (1, 3, 4)] == [True, True, True]
    fill_course(cache, 5, Answer("big", size=80))  # 10 + 10 + 10 + 80 > 100 bytes
    assert cache.sizes()["course_bytes"] <= 100
    assert cache.course(5) is not None
    assert not fill_course(cache, 6, Answer("huge", size=101))  # over the whole budget
    assert cache.course(5) is not None


async def test_concurrent_readers_wait_for_the_read_under_way() -> None:
    clock = Clock()
    cache = synced_cache(clock)
    with cache.filling_course(1) as leader:
        joined = cache.course_in_flight(1)
        assert joined is leader
        waiting = asyncio.ensure_future(joined.joined())
        assert cache.course_in_flight(2) is None
        cache.store_course(leader, Answer("v1"))
        assert not waiting.done()  # settled when the read is over
    assert await waiting == Answer("v1")
    assert cache.course_in_flight(1) is None


async def test_a_read_overtaken_by_a_change_is_not_joined_and_its_waiters_ask_again() -> None:
    clock = Clock()
    cache = synced_cache(clock)
    with cache.filling_course(1) as old_read:
        waiting = asyncio.ensure_future(old_read.joined())
        cache.course_changed(1)
        assert cache.course_in_flight(1) is None  # a request arriving now starts its own read
        with cache.filling_course(1) as new_read:
            assert cache.course_in_flight(1) is new_read
            cache.store_course(new_read, Answer("v2", version=2))
        cache.store_course(old_read, Answer("v1"))
    with pytest.raises(FillFailed):
        await waiting


async def test_waiters_of_a_failed_read_or_one_with_nothing_to_share_ask_again() -> None:
    clock = Clock()
    cache = synced_cache(clock)
    with pytest.raises(RuntimeError), cache.filling_course(1) as failing:
        waiting = asyncio.ensure_future(failing.joined())
        raise RuntimeError("catalog unavailable")
    with pytest.raises(FillFailed):
        await waiting
    with cache.filling_course(1) as draft:  # a draft's answer is never stored, so not shared
        waiting = asyncio.ensure_future(draft.joined())
    with pytest.raises(FillFailed):
        await waiting
    cache.reader_lost()
    with cache.filling_course(1):
        assert cache.course_in_flight(1) is None  # not serving: nobody waits on anybody
