"""The sensor log's upkeep: per-minute and per-hour aggregates, retention, series for plots, storage.

Readings are rows of the journal (journal.py). As they age they are folded
into ``agg_minute`` and ``agg_hour`` (count, mean, min, max); once older than
``retention.raw_days`` *and* acknowledged by the hub (with the default
``unsynced = "keep"``) the raw rows are deleted. Aggregates never leave the
node: the hub has the raw readings.

The aggregation watermark only advances to a minute that is complete by the
hybrid clock, and every later entry has a later timestamp, so no reading can
arrive in a minute that was already aggregated.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from typing import Any

from shoal.edge.config import RetentionConfig
from shoal.edge.hlc import physical
from shoal.edge.journal import Journal
from shoal.store.db import Conn

log = logging.getLogger(__name__)

MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000
#: rows deleted per transaction: the writer stays free for new readings between chunks
DELETE_CHUNK = 100_000


@dataclass(slots=True)
class Point:
    t: int  # ms, start of the bucket
    mean: float
    min: float
    max: float
    n: int


class SensorLog:
    """Aggregates, retention and queries over one node's journal."""

    def __init__(self, journal: Journal, retention: RetentionConfig, *, has_hub: bool) -> None:
        self.journal = journal
        self.retention = retention
        self.has_hub = has_hub

    # -- aggregates -------------------------------------------------------------------
    async def aggregate(self) -> list[tuple[int, int, int, float, float, float]]:
        """Fold complete minutes into agg_minute/agg_hour; returns the new minute rows.

        Rows are ``(sensor, t, n, mean, min, max)``; the routine learns from them.
        """
        j = self.journal
        st = await j.state()
        since = int(st.get("agg_until", "0"))
        until = (physical(j.clock.last) // MINUTE) * MINUTE  # the current minute may still grow
        if until <= since:
            return []
        first = await j.seq_at(since) if since else await j.oldest()
        last = await j.seq_at(until) - 1
        if last < first:
            await j.set_state(agg_until=until)
            return []

        def fn(c: Conn) -> list[Any]:
            rows = []
            lo = first
            while lo <= last:  # chunked: 90 days of a backlog must not be one giant GROUP BY
                hi = min(last, lo + 500_000)
                rows += c.execute(
                    "SELECT sensor, ((hlc >> 16) / 60000) * 60000 AS t, count(*), avg(value), min(value), max(value)"
                    " FROM journal WHERE seq BETWEEN ? AND ? AND kind = 0 GROUP BY sensor, t",
                    (lo, hi),
                ).fetchall()
                lo = hi + 1
            merged: dict[tuple[int, int], list[float]] = {}
            for s, t, n, mean, mn, mx in rows:
                if t < since or t >= until:
                    continue
                m = merged.get((s, t))
                if m is None:
                    merged[(s, t)] = [n, mean * n, mn, mx]
                else:
                    m[0] += n
                    m[1] += mean * n
                    m[2], m[3] = min(m[2], mn), max(m[3], mx)
            out = [(s, t, int(v[0]), v[1] / v[0], v[2], v[3]) for (s, t), v in sorted(merged.items())]
            c.executemany(
                "INSERT INTO agg_minute (sensor, t, n, mean, min, max) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(sensor, t) DO UPDATE SET mean = (mean * n + excluded.mean * excluded.n) / (n + excluded.n),"
                " n = n + excluded.n, min = min(min, excluded.min), max = max(max, excluded.max)",
                out,
            )
            # hours touched by these minutes are recomputed from their minutes
            hours = sorted({(s, (t // HOUR) * HOUR) for s, t, *_ in out})
            for s, h in hours:
                c.execute(
                    "INSERT OR REPLACE INTO agg_hour (sensor, t, n, mean, min, max)"
                    " SELECT sensor, ?, sum(n), sum(mean * n) / sum(n), min(min), max(max) FROM agg_minute"
                    " WHERE sensor = ? AND t >= ? AND t < ? GROUP BY sensor",
                    (h, s, h, h + HOUR),
                )
            c.execute(
                "INSERT INTO state (key, value) VALUES ('agg_until', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(until),),
            )
            return out

        return await j.write(fn)  # type: ignore[no-any-return]

    # -- retention --------------------------------------------------------------------
    def removable_upto(self) -> int | None:
        """The highest seq retention may remove (None: no limit), by the unsynced policy."""
        if self.has_hub and self.retention.unsynced == "keep":
            return self.journal.acked
        return None

    async def apply_retention(self, now_ms: int | None = None) -> dict[str, int]:
        """Remove what retention allows; returns how many rows of each kind went."""
        j = self.journal
        now_ms = now_ms if now_ms is not None else physical(j.clock.last) or j.wall_ms()
        await self.aggregate()
        st = await j.state()
        agg_until = int(st.get("agg_until", "0"))
        cutoff = min(now_ms - int(self.retention.raw_days * DAY), agg_until)
        upto = await j.seq_at(cutoff) - 1
        limit = self.removable_upto()
        if limit is not None:
            upto = min(upto, limit)
        removed = {"readings": await self._delete_readings(upto)}

        def fn(c: Conn) -> tuple[int, int]:
            m = c.execute("DELETE FROM agg_minute WHERE t < ?", (now_ms - int(self.retention.minute_days * DAY),)).rowcount
            h = 0
            if self.retention.hour_days:
                h = c.execute("DELETE FROM agg_hour WHERE t < ?", (now_ms - int(self.retention.hour_days * DAY),)).rowcount
            return m, h

        removed["minutes"], removed["hours"] = await j.write(fn)
        if any(removed.values()):
            log.info("retention removed %s", removed)
        return removed

    async def thin(self, rows: int) -> int:
        """Disk (nearly) full: remove up to ``rows`` of the oldest readings the hub already has.

        They were aggregated first and the hub keeps them raw, so nothing is
        lost. SQLite reuses the freed pages for new readings, so the file
        stops growing (it does not shrink). Readings the hub lacks are never
        touched. Returns the rows removed.
        """
        j = self.journal
        try:
            await self.aggregate()
        except Exception:  # on a full disk even the aggregates may not fit; thin anyway, they are at the hub
            log.debug("aggregation before thinning failed", exc_info=True)
        st = await j.state()
        agg_upto = await j.seq_at(int(st.get("agg_until", "0"))) - 1
        limit = min(j.acked, agg_upto) if self.has_hub else agg_upto
        lo = await j.oldest()
        if lo > limit:
            return 0
        # readings are most of the rows, so a seq span of about ``rows`` removes about that many
        total = await self._delete_readings(min(limit, lo + rows - 1), start=lo)
        if total:
            log.warning("disk nearly full: removed %d of the oldest readings (the hub has them) to make room", total)
        return total

    async def _delete_readings(self, upto: int, *, start: int | None = None) -> int:
        if upto <= 0:
            return 0
        j = self.journal
        lo = start if start is not None else await j.oldest()
        total = 0
        while lo <= upto:
            hi = min(upto, lo + DELETE_CHUNK - 1)
            total += await j.write(
                lambda c, lo=lo, hi=hi: c.execute("DELETE FROM journal WHERE seq BETWEEN ? AND ? AND kind = 0", (lo, hi)).rowcount
            )
            lo = hi + 1
        return total

    def free_bytes(self) -> int:
        try:
            return shutil.disk_usage(self.journal.path.parent).free
        except OSError:
            return 0

    # -- queries ----------------------------------------------------------------------
    async def series(self, sensor: int, since_ms: int, until_ms: int, points: int = 500) -> list[Point]:
        """Up to ``points`` buckets of the sensor between two times, from the finest data kept."""
        j = self.journal
        bucket = max(1000, (until_ms - since_ms) // max(1, points))
        first_raw = await j.db.read(
            lambda c: c.execute("SELECT hlc FROM journal WHERE kind = 0 ORDER BY seq LIMIT 1").fetchone()
        )
        raw_from = physical(first_raw[0]) if first_raw else until_ms + 1
        if since_ms >= raw_from and bucket < HOUR:
            lo, hi = await j.seq_at(since_ms), await j.seq_at(until_ms) - 1
            rows = await j.db.read(
                lambda c: c.execute(
                    "SELECT ((hlc >> 16) / ?) * ? AS b, avg(value), min(value), max(value), count(*) FROM journal"
                    " WHERE seq BETWEEN ? AND ? AND kind = 0 AND sensor = ? GROUP BY b ORDER BY b",
                    (bucket, bucket, lo, hi, sensor),
                ).fetchall()
            )
        else:
            table = "agg_hour" if bucket >= HOUR else "agg_minute"
            rows = await j.db.read(
                lambda c: c.execute(
                    f"SELECT (t / ?) * ? AS b, sum(mean * n) / sum(n), min(min), max(max), sum(n) FROM {table}"
                    " WHERE sensor = ? AND t >= ? AND t < ? GROUP BY b ORDER BY b",
                    (bucket, bucket, sensor, since_ms, until_ms),
                ).fetchall()
            )
        return [Point(int(r[0]), float(r[1]), float(r[2]), float(r[3]), int(r[4])) for r in rows]

    async def storage(self, *, count: bool = True) -> dict[str, Any]:
        """Bytes on disk and per stored entry (``count=False`` skips the full count)."""
        j = self.journal

        def fn(c: Conn) -> dict[str, Any]:
            page = c.execute("PRAGMA page_size").fetchone()[0]
            pages = c.execute("PRAGMA page_count").fetchone()[0]
            free = c.execute("PRAGMA freelist_count").fetchone()[0]
            out: dict[str, Any] = {"db_bytes": page * pages, "used_bytes": page * (pages - free)}
            if count:
                out["readings"] = c.execute("SELECT count(*) FROM journal WHERE kind = 0").fetchone()[0]
                out["entries"] = c.execute("SELECT count(*) FROM journal").fetchone()[0]
                out["minutes"] = c.execute("SELECT count(*) FROM agg_minute").fetchone()[0]
                out["hours"] = c.execute("SELECT count(*) FROM agg_hour").fetchone()[0]
            return out

        out = await j.db.read(fn)
        wal = j.path.with_name(j.path.name + "-wal")
        out["wal_bytes"] = os.path.getsize(wal) if wal.exists() else 0
        if count and out.get("entries"):
            out["bytes_per_entry"] = round(out["used_bytes"] / out["entries"], 2)
        out["free_disk_bytes"] = self.free_bytes()
        return out
