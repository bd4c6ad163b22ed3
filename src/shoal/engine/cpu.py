"""The CPU budget: llama.cpp owns the cores, other work borrows them.

A 2-thread llama.cpp decode on 2 cores collapses (45 -> 5 tok/s, DESIGN.md
§4) when one more thread competes. Work that needs a core for a moment
(embedding a message) borrows one; every engine step asks how many threads it
may use and drops to fewer while something is borrowed.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
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


BUDGET = CpuBudget()
