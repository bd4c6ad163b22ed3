"""The CPU budget: llama.cpp owns the cores, other work borrows them.

A 2-thread llama.cpp decode on 2 cores collapses (45 -> 5 tok/s, DESIGN.md
§4) when one more thread competes. Work that needs a core for a moment
(embedding a message) borrows one; every engine step asks how many threads it
may use and drops to fewer while something is borrowed.
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

    def threads_for(self, wanted: int) -> int:
        """Threads an engine wanting ``wanted`` may run right now (at least one)."""
        return max(1, min(wanted, self.cores - self._borrowed))


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


def foreground_beacon() -> Path:
    """The file whose mtime says when a foreground reply last made progress (see ``note_foreground``)."""
    home = os.environ.get("SHOAL_HOME")
    return (Path(home).expanduser() if home else Path("~/.shoal").expanduser()) / "learn" / "foreground"


BUDGET = CpuBudget()
