"""The daemon's clock: wall time read once, then advanced by the monotonic clock.

Apply timers (ACK gap timeouts, deadlines, re-send backoff) compare timestamps from this clock. Read from
the wall clock, an NTP step backwards would delay a gap timeout by the size of the step, and a step forwards
would fire deadlines early. Anchored once and advanced by ``time.monotonic()`` deltas, the clock moves at
the rate of real elapsed time whatever the wall clock does; a restart anchors it again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class MonotonicClock:
    """Callable like ``utc_now`` and shared by every actor thread. ``wall`` and ``monotonic`` are the
    sources (injected by tests); the answer never goes backwards, even from a misbehaving source."""

    def __init__(self, wall: Callable[[], datetime] = utc_now,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._anchor_mono = monotonic()
        self._anchor_wall = wall()
        self._last = self._anchor_wall
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        elapsed = timedelta(seconds=self._monotonic() - self._anchor_mono)
        with self._lock:  # several actor threads ask at once; the max keeps every answer ordered
            self._last = max(self._last, self._anchor_wall + elapsed)
            return self._last
