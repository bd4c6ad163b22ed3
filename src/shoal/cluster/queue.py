"""The cluster's waiting room: a bounded priority queue with aging.

Policy: **fail fast** when full (``QueueFull``, with a hint), never drop
silently. Order: effective priority, then rank (higher first), then arrival.
A request's effective priority improves by one class for every ``aging``
seconds it waits, so background work is never starved by a steady stream of
foreground requests.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from shoal.errors import CapacityError
from shoal.types import GenerateRequest

if TYPE_CHECKING:
    from shoal.cluster.member import Member


class QueueFull(CapacityError):
    """The cluster's queue is full: the request is refused at once, not queued."""


_seq = itertools.count()


@dataclass(eq=False)
class Ticket:
    req: GenerateRequest
    model: str | None
    prefer: str | None
    exclude: frozenset[str]
    enqueued: float
    future: asyncio.Future["Member"]
    #: the model's name on the server it was admitted to
    upstream: str | None = None
    seq: int = field(default_factory=lambda: next(_seq))

    def effective_priority(self, now: float, aging: float) -> float:
        return int(self.req.priority) - (now - self.enqueued) / aging


class AdmissionQueue:
    def __init__(self, max_queue: int, aging: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_queue = max_queue
        self.aging = aging
        self._clock = clock
        self._waiting: list[Ticket] = []
        #: requests refused because the queue was full
        self.dropped = 0

    @property
    def pending(self) -> int:
        return len(self._waiting)

    def push(self, ticket: Ticket, *, bounded: bool = True) -> None:
        """Queue ``ticket``; raises ``QueueFull`` when full (unless ``bounded`` is false:
        the caller admits at once or calls ``refuse``)."""
        if bounded and len(self._waiting) >= self.max_queue:
            self.refuse()
        self._waiting.append(ticket)

    def refuse(self) -> None:
        self.dropped += 1
        raise QueueFull(
            f"the cluster is busy: {len(self._waiting)} requests are already waiting for a server "
            f"(cluster.max_queue = {self.max_queue})",
            hint="retry shortly, add or enable servers, raise max_concurrent on them, "
            "or raise cluster.max_queue in shoal.toml",
        )

    def remove(self, ticket: Ticket) -> None:
        try:
            self._waiting.remove(ticket)
        except ValueError:
            pass

    def ordered(self) -> list[Ticket]:
        """Waiting tickets, most urgent first."""
        now = self._clock()
        return sorted(
            self._waiting,
            key=lambda t: (t.effective_priority(now, self.aging), -t.req.rank, t.enqueued, t.seq),
        )

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self._waiting))
