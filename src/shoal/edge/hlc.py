"""A hybrid logical clock: timestamps that only move forward, with or without a real-time clock.

A timestamp packs the physical part (Unix milliseconds) and a logical counter
into one 64-bit integer, ``pt << 16 | counter``, so ordering is integer
ordering and SQLite stores it in 8 bytes. ``now()`` returns
``max(wall, last)`` and bumps the counter when the wall clock stands still
or went back; ``update(remote)`` folds in another clock (the hub's, at each
sync) so a node whose clock is behind catches up without ever going back.

A Raspberry Pi has no battery-backed clock: after a reboot without network
its wall clock may start in the past. The clock is seeded from the journal
(the largest timestamp stored), so the first entry after the reboot is still
later than every entry before it. When the counter would overflow (65,536
events inside one millisecond, or a long stretch after the wall clock went
back), the physical part moves one millisecond ahead instead: still strictly
increasing, drifting by at most a millisecond per 65,536 events until the wall
clock catches up.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

LOGICAL_BITS = 16
LOGICAL_MAX = (1 << LOGICAL_BITS) - 1


def pack(pt_ms: int, counter: int = 0) -> int:
    return (pt_ms << LOGICAL_BITS) | counter


def physical(ts: int) -> int:
    """The physical part of a timestamp, in Unix milliseconds."""
    return ts >> LOGICAL_BITS


def seconds(ts: int) -> float:
    """A timestamp as Unix seconds (the logical part dropped)."""
    return (ts >> LOGICAL_BITS) / 1000.0


class HybridClock:
    """Strictly increasing timestamps; thread-safe.

    ``wall`` is the device clock (seconds, like ``time.time``); tests inject
    one that jumps. ``behind(wall)`` says how far a reading went back.
    """

    def __init__(self, last: int = 0, *, last_wall: int = 0, wall: Callable[[], float] = time.time) -> None:
        self._last = last
        self._wall = wall
        self._lock = threading.Lock()
        #: the device clock's last reading (ms): a reboot into the past is a jump too
        self._last_wall = last_wall

    @property
    def last(self) -> int:
        return self._last

    @property
    def last_wall(self) -> int:
        return self._last_wall

    def wall_ms(self) -> int:
        return int(self._wall() * 1000)

    def now(self) -> int:
        """A timestamp later than every one returned or observed before."""
        with self._lock:
            return self._tick(self.wall_ms())

    def at(self, wall_ms: int) -> int:
        """Like ``now`` for an event the device clock saw at ``wall_ms`` (a buffered reading)."""
        with self._lock:
            return self._tick(wall_ms)

    def behind(self, wall_ms: int) -> int:
        """How far (ms) ``wall_ms`` is behind the device clock's last reading (0 when it is not)."""
        return max(0, self._last_wall - wall_ms)

    def _tick(self, wall: int) -> int:
        # the device clock's own last reading (behind() compares with it), apart
        # from the HLC, which a hub clock folded in by update() may have moved ahead;
        # after a jump back it follows the clock, so one jump is reported once
        self._last_wall = wall
        last_pt, last_c = self._last >> LOGICAL_BITS, self._last & LOGICAL_MAX
        if wall > last_pt:
            ts = pack(wall)
        else:
            ts = pack(last_pt, last_c + 1) if last_c < LOGICAL_MAX else pack(last_pt + 1)
        self._last = ts
        return ts

    def update(self, remote: int) -> int:
        """Fold in a timestamp from elsewhere (HLC receive rule); returns the new ``last``."""
        with self._lock:
            if remote > self._last:
                self._last = remote
            return self._last
