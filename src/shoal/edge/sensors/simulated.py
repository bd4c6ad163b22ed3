"""Deterministic signals for tests and demos: daily cycles, a motion routine, injected anomalies.

The value at a time is a pure function of (seed, sensor name, time): two runs,
or a node and a test, agree exactly. Noise comes from a counter-based hash
(splitmix64) of the reading's slot (time // interval), so ``values`` can
compute 90 days of readings at once with numpy (the bench does) and ``read``
gives the same numbers one at a time.
"""

from __future__ import annotations

import hashlib
import time as _time
from typing import Any

import numpy as np

from shoal.edge.sensors.base import Sensor

_M1, _M2, _GOLD = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def _splitmix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x * _GOLD
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def uniform(key: int, slots: np.ndarray) -> np.ndarray:
    """Deterministic uniforms in [0, 1) for integer slots."""
    with np.errstate(over="ignore"):
        x = slots.astype(np.uint64) ^ np.uint64(key)
    return (_splitmix(x) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def local_seconds(t: np.ndarray) -> np.ndarray:
    """Seconds since local midnight for Unix times ``t`` (the host's time zone, DST included)."""
    days = np.floor(t / 86400.0)
    offsets = {d: _time.localtime(d * 86400.0 + 43200).tm_gmtoff for d in np.unique(days).tolist()}
    off = np.vectorize(offsets.__getitem__, otypes=[np.float64])(days) if len(offsets) > 1 else next(iter(offsets.values()))
    return np.mod(t + off, 86400.0)


class SimulatedSource(Sensor):
    kind = "simulated"

    def __init__(self, config: Any, **kw: Any) -> None:
        super().__init__(config, **kw)
        digest = hashlib.blake2b(f"{config.seed}:{config.name}".encode(), digest_size=8).digest()
        self.key = int.from_bytes(digest, "little")

    def values(self, t: np.ndarray) -> np.ndarray:
        """The signal at Unix times ``t`` (seconds), rounded to the configured decimals."""
        c = self.config
        t = np.asarray(t, dtype=np.float64)
        slots = np.floor(t / c.interval).astype(np.int64)
        u = uniform(self.key, slots)
        secs = local_seconds(t)
        hours = secs / 3600.0
        if c.pattern == "motion":
            active = np.zeros(t.shape, dtype=bool)
            for a, b in c.active_hours:
                active |= (hours >= a) & (hours < b) if a <= b else (hours >= a) | (hours < b)
            v = (u < np.where(active, c.active_rate, c.idle_rate)).astype(np.float64)
        else:
            v = np.full(t.shape, float(c.mean))
            if c.pattern == "daily":
                v = v + c.amplitude * np.cos(2 * np.pi * (hours - c.peak_hour) / 24.0)
            v = v + c.noise * (2 * u - 1)
        for an in c.anomalies:
            since = secs - an.at
            inside = (np.mod(since, an.every) < an.duration) if an.every else (since >= 0) & (since < an.duration)
            v = np.where(inside, an.value if an.value is not None else v + an.add, v)
        return np.round(v, 0 if c.pattern == "motion" else c.decimals)

    async def read(self) -> float:
        return float(self.values(np.array([self.wall()]))[0])
