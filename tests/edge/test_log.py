"""Retention and aggregates on a real journal: raw readings age into per-minute/hour aggregates,
and nothing the hub lacks is ever removed."""

from __future__ import annotations

import time
from pathlib import Path

from shoal.edge.config import RetentionConfig
from shoal.edge.journal import READING, SENSOR, Journal, NewEntry
from shoal.edge.log import DAY, SensorLog

from .conftest import Clock


async def forty_days(tmp_path: Path) -> Journal:
    """A reading a minute for 40 days, ending now."""
    now = time.time()
    clock = Clock(now - 40 * 86400 - 60)
    j = await Journal.open(tmp_path / "edge.db", node="n", wall=clock)
    s = await j.declare_sensor("t", "simulated", "°C")
    t0 = int((now - 40 * 86400) * 1000)
    n = 40 * 1440
    await j.append([NewEntry(READING, t0 + i * 60_000, s.id, float(i % 100)) for i in range(n)])
    clock.t = None
    return j


async def test_readings_the_hub_lacks_stay_raw_however_old(tmp_path: Path) -> None:
    j = await forty_days(tmp_path)
    log = SensorLog(j, RetentionConfig(raw_days=30), has_hub=True)
    removed = await log.apply_retention()
    assert removed["readings"] == 0  # nothing acknowledged: everything stays
    stats = await log.storage()
    assert stats["readings"] == 40 * 1440 and stats["minutes"] > 0  # aggregated all the same
    await j.close()


async def test_acknowledged_readings_older_than_raw_days_become_aggregates(tmp_path: Path) -> None:
    j = await forty_days(tmp_path)
    j.acked = j.head  # the hub has everything
    log = SensorLog(j, RetentionConfig(raw_days=30), has_hub=True)
    removed = await log.apply_retention()
    assert 10 * 1440 - 5 <= removed["readings"] <= 10 * 1440 + 5
    left = await j.entries(1, j.head)
    oldest = min(e.time for e in left if e.kind == READING)
    assert oldest >= time.time() - 30 * 86400 - 120
    # the old range still plots, from the aggregates; a recent one from raw readings
    now_ms = int(time.time() * 1000)
    old = await log.series(j.sensors["t"].id, now_ms - 39 * DAY, now_ms - 38 * DAY, points=24)
    assert len(old) == 24 and all(p.n == 60 for p in old) and old[0].min >= 0 and old[0].max <= 99
    recent = await log.series(j.sensors["t"].id, now_ms - 3600_000, now_ms, points=60)
    assert 55 <= len(recent) <= 61 and all(p.n == 1 for p in recent)
    await j.close()


async def test_a_nearly_full_disk_thins_only_what_the_hub_already_has(tmp_path: Path) -> None:
    j = await forty_days(tmp_path)
    j.acked = 1000
    log = SensorLog(j, RetentionConfig(raw_days=365), has_hub=True)
    removed = await log.thin(50_000)
    assert removed == 999  # readings 2..1000 (seq 1 declares the sensor and stays), not one further
    assert [e.kind for e in await j.entries(1, 1000)] == [SENSOR]
    assert len(await j.entries(1001, j.head)) == j.head - 1000
    await j.close()
