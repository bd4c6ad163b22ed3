"""A circuit breaker per server: stop sending work to a server that keeps failing.

closed ──(threshold failures in a row)──► open ──(cooldown)──► half-open
  ▲                                                              │
  └──────────────(the one trial request succeeds)────────────────┘
                     (the trial fails: open again)
"""

from __future__ import annotations

import time
from typing import Callable, Literal

State = Literal["closed", "open", "half-open"]


class Breaker:
    def __init__(self, threshold: int = 3, cooldown: float = 15.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._state: State = "closed"
        self.failures = 0
        self.opened_at = 0.0
        self._trial = False
        #: times the circuit opened, for metrics
        self.trips = 0

    @property
    def state(self) -> State:
        if self._state == "open" and self._clock() - self.opened_at >= self.cooldown:
            self._state = "half-open"
            self._trial = False
        return self._state

    def allows(self) -> bool:
        """May a new request go to this server now?"""
        state = self.state
        return state == "closed" or (state == "half-open" and not self._trial)

    def admitted(self) -> None:
        """A request was admitted; in half-open it is the one trial."""
        if self.state == "half-open":
            self._trial = True

    def success(self) -> None:
        self.failures = 0
        self._state = "closed"
        self._trial = False

    def failure(self) -> None:
        self.failures += 1
        if self.state == "half-open" or self.failures >= self.threshold:
            if self._state != "open":
                self.trips += 1
            self._state = "open"
            self.opened_at = self._clock()
            self._trial = False

    def released(self) -> None:
        """A trial ended with neither success nor failure (cancelled): allow another."""
        self._trial = False

    def retry_in(self) -> float:
        if self._state != "open":
            return 0.0
        return max(0.0, self.cooldown - (self._clock() - self.opened_at))
