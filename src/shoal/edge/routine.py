"""The learned routine and the local facts drawn from it.

Every complete minute of a sensor (its mean) is folded into a running mean
and variance for that sensor at that hour of the (local) day — Welford's
method, in the ``routine`` table, so it survives restarts and costs one row
per sensor and hour. Anomaly rules (observe.py) compare a window against it.

Local facts ("this room usually has motion 7–9 am") are computed from the
routine, not written by the model: every number in a fact is a statistic of
stored readings, and the fact carries that basis (days and minutes seen).
A fact has a key (``routine:<sensor>``); a new version supersedes the old one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from shoal.edge.journal import Journal, Sensor
from shoal.store.db import Conn

#: a routine is trusted after this many minutes in the hour, seen on this many days
MIN_MINUTES = 30
MIN_DAYS = 2


def local_hour_day(t_ms: int) -> tuple[int, int]:
    lt = time.localtime(t_ms / 1000.0)
    return lt.tm_hour, (int(t_ms / 1000.0) + lt.tm_gmtoff) // 86400


@dataclass(slots=True)
class Usual:
    n: int
    mean: float
    std: float
    days: int

    @property
    def trusted(self) -> bool:
        return self.n >= MIN_MINUTES and self.days >= MIN_DAYS


@dataclass(slots=True)
class FactDraft:
    key: str
    sensor: str
    text: str
    basis: dict[str, Any] = field(default_factory=dict)


class Routine:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._cache: dict[tuple[int, int], Usual] = {}

    async def learn(self, minutes: list[tuple[int, int, int, float, float, float]]) -> None:
        """Fold minute aggregates ``(sensor, t, n, mean, min, max)`` into the routine."""
        if not minutes:
            return

        def fn(c: Conn) -> None:
            state: dict[tuple[int, int], list[float]] = {}
            for s, t, _n, mean, _mn, _mx in minutes:
                hour, day = local_hour_day(t)
                key = (s, hour)
                if key not in state:
                    row = c.execute(
                        "SELECT n, mean, m2, days, last_day FROM routine WHERE sensor = ? AND hour = ?", key
                    ).fetchone()
                    state[key] = list(row) if row else [0, 0.0, 0.0, 0, -1]
                st = state[key]
                st[0] += 1
                delta = mean - st[1]
                st[1] += delta / st[0]
                st[2] += delta * (mean - st[1])
                if day != st[4]:
                    st[3], st[4] = st[3] + 1, day
            c.executemany(
                "INSERT OR REPLACE INTO routine (sensor, hour, n, mean, m2, days, last_day) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(s, h, int(v[0]), v[1], v[2], int(v[3]), int(v[4])) for (s, h), v in state.items()],
            )

        await self.journal.write(fn)
        self._cache.clear()

    async def all(self) -> dict[tuple[int, int], Usual]:
        if not self._cache:
            rows = await self.journal.db.read(lambda c: c.execute("SELECT sensor, hour, n, mean, m2, days FROM routine").fetchall())
            self._cache = {
                (r[0], r[1]): Usual(r[2], r[3], math.sqrt(r[4] / (r[2] - 1)) if r[2] > 1 else 0.0, r[5]) for r in rows
            }
        return self._cache

    async def usual(self, sensor: int, hour: int) -> Usual | None:
        return (await self.all()).get((sensor, hour))

    async def facts(self, sensors: list[Sensor], location: str = "") -> list[FactDraft]:
        """What the routine says about each sensor, as facts (only where it is trusted)."""
        table = await self.all()
        where = f" in the {location}" if location else ""
        out = []
        for s in sensors:
            hours = {h: u for (sid, h), u in table.items() if sid == s.id and u.trusted}
            if len(hours) < 3:
                continue
            days = max(u.days for u in hours.values())
            minutes = sum(u.n for u in hours.values())
            basis = {"days": days, "minutes": minutes, "hours": sorted(hours)}
            if s.binary:
                overall = sum(u.mean * u.n for u in hours.values()) / minutes
                busy = sorted(h for h, u in hours.items() if u.mean >= max(0.02, 3 * overall))
                if not busy:
                    text = f"{s.title.capitalize()}{where} is rarely active at any hour."
                else:
                    spans = ", ".join(f"{a:02d}:00–{b + 1:02d}:00" for a, b in _spans(busy))
                    text = f"{s.title.capitalize()}{where} is usually active {spans}."
                basis["busy_hours"] = busy
            else:
                lo_h = min(hours, key=lambda h: hours[h].mean)
                hi_h = max(hours, key=lambda h: hours[h].mean)
                unit = f" {s.unit}" if s.unit else ""
                text = (
                    f"{s.title.capitalize()}{where} is usually between {_fmt(hours[lo_h].mean)} and "
                    f"{_fmt(hours[hi_h].mean)}{unit}, highest around {hi_h:02d}:00 and lowest around {lo_h:02d}:00."
                )
                basis.update(low=round(hours[lo_h].mean, 3), high=round(hours[hi_h].mean, 3), low_hour=lo_h, high_hour=hi_h)
            out.append(FactDraft(f"routine:{s.name}", s.name, text, basis))
        return out


def _spans(hours: list[int]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for h in hours:
        if spans and spans[-1][1] == h - 1:
            spans[-1] = (spans[-1][0], h)
        else:
            spans.append((h, h))
    return spans


def _fmt(v: float) -> str:
    return f"{v:.1f}" if abs(v) < 100 else f"{v:.0f}"
