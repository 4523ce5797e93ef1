"""How long to wait before retry number `attempt`: the one backoff every retry loop uses."""

from __future__ import annotations

import math
import random

# 2**64 times any sensible base is past every cap; a larger exponent would only overflow the
# float (after ~1000 failures, i.e. an outage of an hour or two at a few seconds a retry).
_MAX_EXPONENT = 64


def backoff_delay(
    attempt: int, *, base_s: float, max_s: float = math.inf, jitter: float = 0.0
) -> float:
    """`base_s * 2**attempt` seconds (attempt 0 waits `base_s`), capped at `max_s`, then spread by
    +-`jitter` (a fraction) so clients hit by the same outage do not retry in lockstep."""
    delay = min(base_s * 2.0 ** min(max(attempt, 0), _MAX_EXPONENT), max_s)
    if jitter:
        delay *= random.uniform(1.0 - jitter, 1.0 + jitter)
    return delay
