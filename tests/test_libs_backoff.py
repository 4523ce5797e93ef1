"""libs/backoff.py: the one retry delay of the outbox relay and the notifier."""

from __future__ import annotations

import pytest

from libs.backoff import backoff_delay

pytestmark = pytest.mark.unit


def test_doubles_from_the_base_up_to_the_cap() -> None:
    delays = [backoff_delay(attempt, base_s=0.5, max_s=5.0) for attempt in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_a_long_outage_stays_at_the_cap_instead_of_overflowing() -> None:
    # 0.5 * 2**1100 as int arithmetic overflows a float: a relay failing every few seconds for
    # about an hour would have died in its own error handler.
    assert backoff_delay(1100, base_s=0.5, max_s=5.0) == 5.0
    assert backoff_delay(10**6, base_s=0.2, max_s=2.0) == 2.0


def test_jitter_spreads_within_its_fraction_and_varies() -> None:
    delays = [backoff_delay(3, base_s=0.5, jitter=0.2) for _ in range(200)]
    assert all(3.2 <= delay <= 4.8 for delay in delays)
    assert len(set(delays)) > 100  # not one fixed value: consumers do not retry in lockstep
