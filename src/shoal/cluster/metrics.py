"""Counters and histograms the cluster keeps, rendered as Prometheus text by ``status``.

Small on purpose (no client library): a counter is a dict of label tuples,
a histogram a list of cumulative bucket counts.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field


class Counter:
    def __init__(self) -> None:
        self.values: dict[tuple[str, ...], int] = {}

    def inc(self, *labels: str, by: int = 1) -> None:
        self.values[labels] = self.values.get(labels, 0) + by

    def total(self) -> int:
        return sum(self.values.values())


class Histogram:
    BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

    def __init__(self) -> None:
        self.counts = [0] * len(self.BUCKETS)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.BUCKETS, value)
        if i < len(self.counts):
            self.counts[i] += 1
        self.count += 1
        self.sum += value

    def cumulative(self) -> list[tuple[float, int]]:
        out, running = [], 0
        for le, n in zip(self.BUCKETS, self.counts):
            running += n
            out.append((le, running))
        return out


@dataclass
class Metrics:
    #: labels: server, outcome (ok | failed | cancelled | refused)
    requests: Counter = field(default_factory=Counter)
    #: labels: server the stream moved away from
    failovers: Counter = field(default_factory=Counter)
    #: labels: server that failed before the first token
    retries: Counter = field(default_factory=Counter)
    #: labels: wanted (the server a turn's complexity asked for), server (the one that wrote the reply) — local first
    local_first: Counter = field(default_factory=Counter)
    #: seconds from the request to its first token (queue + load + prompt)
    ttft: Histogram = field(default_factory=Histogram)
    #: seconds from the request to its last token
    duration: Histogram = field(default_factory=Histogram)
