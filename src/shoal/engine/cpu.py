"""The CPU budget: llama.cpp owns the cores, other work borrows them.

A 2-thread llama.cpp decode on 2 cores collapses (45 -> 5 tok/s, DESIGN.md
§4) when one more thread competes. Work that needs a core for a moment
(embedding a message) borrows one; every engine step asks how many threads it
may use and drops to fewer while something is borrowed.

Other *processes* compete too (a shared machine, a trainer in another
process). ``threads_for(..., contention=True)`` also leaves out the cores
they kept busy lately (``other_cores``, from /proc/stat minus this process's
own CPU time): llama.cpp's threads wait for each other at every barrier, so a
thread that loses its core stalls the whole step (measured under load: 5-token
steps took a median 516 ms with 2 threads and 135 ms with 1, docs/engine.md).
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class CpuBudget:
    def __init__(self, cores: int | None = None) -> None:
        self.cores = cores or os.cpu_count() or 1
        self._borrowed = 0
        self._lock = threading.Lock()
        self.borrows = 0

    @property
    def borrowed(self) -> int:
        return self._borrowed

    @contextmanager
    def borrow(self, n: int = 1) -> Iterator[None]:
        with self._lock:
            self._borrowed += n
            self.borrows += 1
        try:
            yield
        finally:
            with self._lock:
                self._borrowed -= n

    def threads_for(self, wanted: int, *, contention: bool = False) -> int:
        """Threads an engine wanting ``wanted`` may run right now (at least one).

        ``contention``: also leave out the cores other processes kept busy lately.
        """
        free = self.cores - self._borrowed
        if contention:
            # round: a process using a fifth of a core does not cost a thread; one using half does
            free = min(free, int(self.cores - self.other_cores() + 0.5))
        return max(1, min(wanted, free))

    # -- other processes' load ------------------------------------------------------------
    #: seconds between samples of /proc/stat (a sample costs ~20 µs)
    SAMPLE_EVERY = 0.5
    _sampled_at = 0.0
    _busy_s = 0.0
    _ours_s = 0.0
    _other = 0.0

    def other_cores(self) -> float:
        """Cores other processes kept busy lately (a smoothed average over ~1 s; 0 where /proc is absent)."""
        now = time.monotonic()
        if now - self._sampled_at < self.SAMPLE_EVERY:
            return self._other
        busy, ours = _busy_seconds(), time.process_time()
        if busy is None:
            return 0.0
        if self._sampled_at:
            dt = now - self._sampled_at
            other = max(0.0, ((busy - self._busy_s) - (ours - self._ours_s)) / dt)
            self._other = 0.5 * self._other + 0.5 * min(other, float(self.cores))
        self._sampled_at, self._busy_s, self._ours_s = now, busy, ours
        return self._other


    # -- the foreground beacon: training (another thread or process) yields to a reply --------
    #: seconds after the last foreground step during which a reply counts as being written
    FOREGROUND_GRACE = 0.75
    _foreground_at = 0.0
    _beacon_at = 0.0

    def note_foreground(self) -> None:
        """The engine is computing a foreground (a person's) reply right now; called every such step.

        In process this is a timestamp; for a trainer in another process it also touches
        ``$SHOAL_HOME/learn/foreground`` (at most every 0.25 s, and only where learning is set up).
        """
        now = time.monotonic()
        self._foreground_at = now
        if now - self._beacon_at < 0.25:
            return
        self._beacon_at = now
        beacon = foreground_beacon()
        try:
            if beacon.parent.is_dir():
                beacon.touch()
        except OSError:  # a beacon is a courtesy: never fail a reply over it
            pass

    def foreground_busy(self) -> bool:
        """Whether a foreground reply is being written now, here or in another shoal process."""
        if time.monotonic() - self._foreground_at < self.FOREGROUND_GRACE:
            return True
        try:
            return time.time() - foreground_beacon().stat().st_mtime < self.FOREGROUND_GRACE + 0.25
        except OSError:
            return False


_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _busy_seconds() -> float | None:
    """CPU seconds all processes used since boot (user, nice, system, irq, softirq, steal), or None."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / _HZ


def foreground_beacon() -> Path:
    """The file whose mtime says when a foreground reply last made progress (see ``note_foreground``)."""
    home = os.environ.get("SHOAL_HOME")
    return (Path(home).expanduser() if home else Path("~/.shoal").expanduser()) / "learn" / "foreground"


BUDGET = CpuBudget()
