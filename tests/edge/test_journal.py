"""The hybrid logical clock, the journal and the wire format, on real SQLite files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from shoal.edge.hlc import LOGICAL_MAX, HybridClock, pack, physical
from shoal.edge.journal import CLOCK, FACT, OBSERVATION, READING, Journal, NewEntry
from shoal.edge.wire import WireError, chunk_end, decode, encode, rows_of
from shoal.errors import DiskFull

from .conftest import Clock


def test_the_clock_only_moves_forward_whatever_the_wall_clock_does() -> None:
    wall = Clock(1000.0)
    c = HybridClock(wall=wall)
    a = c.now()
    wall.t = 900.0  # back 100 s
    b = c.now()
    wall.t = 900.0
    d = c.now()
    assert a < b < d and physical(b) == physical(a) == 1_000_000
    assert c.behind(800_000) == 100_000
    wall.t = 2000.0
    assert physical(c.now()) == 2_000_000  # and follows the wall clock again once it is ahead


def test_a_full_logical_counter_moves_the_physical_part_by_a_millisecond() -> None:
    c = HybridClock(pack(5000, LOGICAL_MAX), wall=lambda: 1.0)
    assert c.now() == pack(5001, 0)


def test_a_hub_clock_ahead_is_folded_in_and_never_pulls_the_clock_back() -> None:
    c = HybridClock(wall=lambda: 10.0)
    c.update(pack(20_000))
    assert physical(c.now()) == 20_000
    c.update(pack(15_000))
    assert physical(c.now()) == 20_000


async def test_sequence_numbers_are_contiguous_and_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    j = await Journal.open(path, node="n")
    s = await j.declare_sensor("t", "simulated", "°C")
    assert (await j.declare_sensor("t", "simulated", "°C")).id == s.id  # unchanged: no new entry
    now = j.wall_ms()
    await j.append([NewEntry(READING, now + i, s.id, float(i)) for i in range(10)])
    uid, last = j.uid, j.clock.last
    await j.close()
    j = await Journal.open(path, node="n", wall=lambda: 0.0)  # a reboot with the clock at 1970
    assert j.uid == uid and j.head == 11 and j.clock.last == last
    e = await j.append([NewEntry(READING, j.wall_ms(), s.id, 1.0)])
    # the reboot into the past is a clock jump; the new entry still sorts after every old one
    assert [x.kind for x in e] == [CLOCK, READING] and e[-1].hlc > last and e[-1].wall == 0
    rows = sqlite3.connect(path).execute("SELECT seq FROM journal ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == list(range(1, 14))
    await j.close()


async def test_a_full_disk_stores_nothing_of_the_batch_and_does_not_move_the_head(tmp_path: Path) -> None:
    j = await Journal.open(tmp_path / "edge.db", node="n")
    s = await j.declare_sensor("t", "simulated")
    await j.db.write(lambda c: c.execute("PRAGMA max_page_count = 12"))  # this connection may not grow the file
    with pytest.raises(DiskFull) as err:
        await j.append([NewEntry(READING, j.wall_ms() + i, s.id, float(i), body=None) for i in range(5000)])
    assert "nothing stored is lost" in err.value.message and "free space" in (err.value.hint or "")
    assert j.head == 1 and int((await j.state())["head"]) == 1
    await j.db.write(lambda c: c.execute("PRAGMA max_page_count = 1000000"))
    assert [e.seq for e in await j.append([NewEntry(READING, j.wall_ms(), s.id, 1.0)])] == [2]
    await j.close()


async def test_facts_supersede_their_older_version_and_notes_are_searchable(tmp_path: Path) -> None:
    j = await Journal.open(tmp_path / "edge.db", node="n")
    now = j.wall_ms()
    await j.append([NewEntry(FACT, now, body={"key": "routine:m", "text": "Motion is usually active 07:00–09:00."})])
    await j.append([NewEntry(FACT, now + 1, body={"key": "routine:m", "text": "Motion is usually active 06:00–09:00."}),
                    NewEntry(OBSERVATION, now + 2, body={"text": "In the garage, temp rose from 20 to 31.5 °C."})])
    rows = await j.db.read(lambda c: c.execute("SELECT seq, superseded_by FROM notes WHERE kind = 'fact' ORDER BY seq").fetchall())
    assert [tuple(r) for r in rows] == [(1, 2), (2, None)]
    hits = await j.db.read(lambda c: c.execute("SELECT rowid FROM notes_fts WHERE notes_fts MATCH 'garage'").fetchall())
    assert [h[0] for h in hits] == [3]
    await j.close()


async def test_the_first_entry_at_or_after_a_time_is_found_by_binary_search(tmp_path: Path) -> None:
    j = await Journal.open(tmp_path / "edge.db", node="n", wall=Clock(100.0))
    s = await j.declare_sensor("t", "simulated")
    await j.append([NewEntry(READING, 100_000 + i * 1000, s.id, 0.0) for i in range(1, 1001)])
    assert await j.seq_at(100_000 + 500 * 1000) == 501
    assert await j.seq_at(0) == 1 and await j.seq_at(10**13) == j.head + 1
    await j.close()


def rows(n: int, *, first: int = 1) -> list[tuple]:  # type: ignore[type-arg]
    t = 1_750_000_000_000
    return [(first + i, (t + i * 1000 + i % 7) << 16, 0, 1 + i % 3, round(20 + (i % 40) / 10, 1), None, None) for i in range(n)]


def test_a_batch_round_trips_exactly_with_bodies_walls_and_holes() -> None:
    r = rows(1000)
    r[10] = (11, r[10][1], OBSERVATION, None, None, None, '{"text":"héllo"}')
    r[20] = (21, r[20][1], READING, 2, -3.25, (r[20][1] >> 16) - 3_600_000, None)  # the device clock an hour behind
    assert rows_of(decode(encode("n", "u", 1, 1000, r))) == r
    holed = r[:300] + r[500:]  # seqs 301-500 removed on the node before they were sent
    b = decode(encode("n", "u", 1, 1000, holed))
    assert rows_of(b) == holed and b.pruned == [(301, 500)]
    empty = decode(encode("n", "u", 2001, 3000, []))
    assert empty.count == 0 and empty.pruned == [(2001, 3000)]


def test_the_same_range_encodes_to_the_same_bytes_and_id() -> None:
    assert encode("n", "u", 1, 500, rows(500)) == encode("n", "u", 1, 500, rows(500))
    assert chunk_end(1, 500) == 500 and chunk_end(500, 500) == 500 and chunk_end(501, 500) == 1000


def test_sensor_readings_travel_compactly() -> None:
    data = encode("n", "u", 1, 20_000, rows(20_000))
    assert len(data) / 20_000 < 8  # bytes per reading on the wire (the bench measures the real figure)


@pytest.mark.parametrize("damage", [lambda d: b"XXXX" + d[4:], lambda d: d[:-10], lambda d: d[:30]])
def test_a_damaged_batch_is_refused_with_a_clear_error(damage) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(WireError):
        decode(damage(encode("n", "u", 1, 100, rows(100))))
    assert np.isfinite(1.0)
