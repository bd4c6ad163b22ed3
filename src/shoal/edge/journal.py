"""The node's journal: every reading, observation and fact, numbered, timestamped, durable.

One SQLite file per node (``$SHOAL_HOME/edge.db``). Each entry has a
contiguous per-node sequence number (``seq``, never reused: the head lives in
``state`` and moves in the same transaction as the rows), a hybrid logical
clock timestamp (``hlc``, see hlc.py) and, when the device clock disagrees
with it by more than a second, the device's own wall time (``wall``).

Entries are only ever appended. Retention (log.py) removes old readings, and
only those the hub has acknowledged unless told otherwise, so a node that was
offline for a season still has everything to send. Commits use
``synchronous=FULL``: an entry that has been committed (and so may have been
sent) survives a power cut, so its sequence number can never be handed out
again to different content.

The journal is the sensor log: a reading is one row (about 27 bytes), with no
secondary index — time ranges are found by binary search on ``seq``, since
``hlc`` grows with it.
"""

from __future__ import annotations

import errno
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from shoal.edge.hlc import HybridClock, physical
from shoal.errors import DiskFull
from shoal.store.db import Conn, Database
from shoal.store.ids import new_id
from shoal.store.migrations import run_script

log = logging.getLogger(__name__)

READING, OBSERVATION, FACT, SENSOR, CLOCK, EVENT = range(6)
KIND_NAMES = {READING: "reading", OBSERVATION: "observation", FACT: "fact", SENSOR: "sensor", CLOCK: "clock", EVENT: "event"}
KIND_CODES = {v: k for k, v in KIND_NAMES.items()}

#: the device clock must disagree with the HLC by more than this (ms) for ``wall`` to be kept
WALL_TOLERANCE_MS = 1000

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY,        -- contiguous per node, never reused
    hlc INTEGER NOT NULL,           -- hybrid logical clock: ms << 16 | counter
    kind INTEGER NOT NULL,          -- 0 reading, 1 observation, 2 fact, 3 sensor, 4 clock, 5 event
    sensor INTEGER,                 -- sensors.id, for readings
    value REAL,
    wall INTEGER,                   -- device wall ms, only when it disagrees with hlc
    body TEXT                       -- JSON, for everything but readings
);
CREATE TABLE IF NOT EXISTS sensors (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    unit TEXT NOT NULL DEFAULT '',
    label TEXT NOT NULL DEFAULT '',
    binary INTEGER NOT NULL DEFAULT 0,
    seq INTEGER NOT NULL            -- the journal entry that declared it
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agg_minute (
    sensor INTEGER NOT NULL, t INTEGER NOT NULL, n INTEGER NOT NULL,
    mean REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL, PRIMARY KEY (sensor, t)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agg_hour (
    sensor INTEGER NOT NULL, t INTEGER NOT NULL, n INTEGER NOT NULL,
    mean REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL, PRIMARY KEY (sensor, t)
) WITHOUT ROWID;
-- the learned routine: per sensor and hour of the day, Welford mean/variance of minute means
CREATE TABLE IF NOT EXISTS routine (
    sensor INTEGER NOT NULL, hour INTEGER NOT NULL, n INTEGER NOT NULL,
    mean REAL NOT NULL, m2 REAL NOT NULL, days INTEGER NOT NULL DEFAULT 0, last_day INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sensor, hour)
) WITHOUT ROWID;
-- observations and facts again, for listing and search (derived from the journal, not synced)
CREATE TABLE IF NOT EXISTS notes (
    seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, hlc INTEGER NOT NULL, sensor TEXT,
    text TEXT NOT NULL, confidence REAL, key TEXT, superseded_by INTEGER, vec BLOB
);
CREATE INDEX IF NOT EXISTS notes_key ON notes(key) WHERE key IS NOT NULL;
CREATE VIRTUAL TABLE IF NOT EXISTS notes_fts USING fts5(text, content='notes', content_rowid='seq', tokenize='porter unicode61');
"""


@dataclass(slots=True)
class NewEntry:
    """An entry to append; ``wall_ms`` is when it was taken, on the device clock."""

    kind: int
    wall_ms: int
    sensor: int | None = None
    value: float | None = None
    body: dict[str, Any] | None = None


@dataclass(slots=True)
class Entry:
    seq: int
    hlc: int
    kind: int
    sensor: int | None
    value: float | None
    wall: int | None
    body: dict[str, Any] | None

    @property
    def time(self) -> float:
        """When it happened, Unix seconds (from the HLC)."""
        return physical(self.hlc) / 1000.0

    @property
    def kind_name(self) -> str:
        return KIND_NAMES.get(self.kind, str(self.kind))

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "hlc": self.hlc, "time": self.time, "kind": self.kind_name,
            "sensor": self.sensor, "value": self.value, "wall": self.wall, "body": self.body,
        }


def first_seq_at(c: Conn, table: str, where: str, args: tuple[Any, ...], t_ms: int, *, empty: int) -> int:
    """The first seq of ``table`` (rows matching ``where``) whose hlc is at or after ``t_ms``.

    A binary search over seq, each probe one index seek: the HLC grows with
    seq, so no index on time is needed (it would cost ~15 bytes a reading).
    ``where`` is a fixed condition with placeholders (``"node = ? AND "``).
    """
    target = t_ms << 16
    bounds = c.execute(f"SELECT min(seq), max(seq) FROM {table} WHERE {where}1", args).fetchone()
    if bounds[0] is None:
        return empty
    lo, hi = int(bounds[0]), int(bounds[1]) + 1
    while lo < hi:
        mid = (lo + hi) // 2
        r = c.execute(f"SELECT seq, hlc FROM {table} WHERE {where}seq >= ? ORDER BY seq LIMIT 1", (*args, mid)).fetchone()
        if r is None or r[1] >= target:
            hi = mid
        else:
            lo = r[0] + 1
    return lo


def _entry(r: Sequence[Any]) -> Entry:
    return Entry(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]) if r[6] else None)


@dataclass(slots=True)
class Sensor:
    id: int
    name: str
    kind: str
    unit: str
    label: str
    binary: bool

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ")


class EdgeDatabase(Database):
    """shoal's Database with the node's durability: ``synchronous=FULL``, no secure delete, a bounded WAL.

    FULL: see the module docstring. secure_delete off: retention deletes
    millions of synced readings, and overwriting each freed page would double
    the writes on an SD card for data that is not private to anyone.
    """

    def _connect(self) -> Conn:
        fresh = getattr(self._local, "conn", None) is None
        conn = super()._connect()
        if fresh:
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA secure_delete=OFF")
            # the WAL shrinks back to 1 MiB after each checkpoint instead of staying at its peak
            conn.execute("PRAGMA journal_size_limit=1048576")
        return conn

    async def open(self) -> "EdgeDatabase":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await self.write(lambda c: run_script(c, SCHEMA))
        return self


def is_disk_full(exc: BaseException | None) -> bool:
    """ENOSPC, or SQLite's "database or disk is full" (also when it hides behind a failed rollback)."""
    if exc is None:
        return False
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    if type(exc).__name__ in ("OperationalError", "DatabaseError") and ("full" in text or "disk i/o" in text):
        return True
    return is_disk_full(exc.__context__) if exc.__context__ is not exc else False


def disk_full(path: Path, exc: BaseException) -> DiskFull:
    return DiskFull(
        f"the disk holding {path.parent} is full; new readings wait in memory and nothing stored is lost ({exc})",
        hint="free space on that disk (or lower edge.retention.raw_days); the node catches up by itself once there is room",
    )


class Journal:
    """Append, read and keep the node's state. Async; SQLite work runs on the database's threads."""

    def __init__(self, path: Path | str, *, node: str, wall: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.node = node
        self.db = EdgeDatabase(self.path)
        self._wall = wall
        self.clock = HybridClock(wall=wall)
        self.uid = ""
        self.head = 0
        self.acked = 0
        self.published = 0
        self.sensors: dict[str, Sensor] = {}

    @classmethod
    async def open(cls, path: Path | str, *, node: str, wall: Callable[[], float] = time.time) -> "Journal":
        j = cls(path, node=node, wall=wall)
        try:
            await j.db.open()
            await j._load()
        except Exception as exc:
            await j.db.close()
            if is_disk_full(exc):
                raise disk_full(j.path, exc) from exc
            raise
        return j

    async def _load(self) -> None:
        def fn(c: Conn) -> tuple[dict[str, str], int, int, list[Any]]:
            st = {r[0]: r[1] for r in c.execute("SELECT key, value FROM state")}
            if "uid" not in st:
                st = {"uid": new_id(), "node": self.node, "head": "0", "acked": "0", "published": "0",
                      "hlc": "0", "last_wall": "0", "created": str(time.time()), "schema": str(SCHEMA_VERSION)}
                c.executemany("INSERT INTO state (key, value) VALUES (?, ?)", list(st.items()))
            row = c.execute("SELECT hlc, wall FROM journal ORDER BY seq DESC LIMIT 1").fetchone()
            last_hlc, last_wall = (row[0], row[1] if row[1] is not None else physical(row[0])) if row else (0, 0)
            sensors = c.execute("SELECT id, name, kind, unit, label, binary FROM sensors").fetchall()
            return st, last_hlc, last_wall, sensors

        st, last_hlc, last_wall, sensors = await self.db.write(fn)
        self.uid = st["uid"]
        self.head = int(st["head"])
        self.acked = int(st.get("acked", 0))
        self.published = int(st.get("published", 0))
        # the clock resumes after the latest timestamp ever issued, whatever the wall clock says now
        self.clock = HybridClock(
            max(last_hlc, int(st.get("hlc", 0))), last_wall=max(last_wall, int(st.get("last_wall", 0))), wall=self._wall
        )
        self.sensors = {r[1]: Sensor(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in sensors}

    async def close(self) -> None:
        await self.db.close()

    async def checkpoint(self) -> bool:
        """Fold the WAL into the database file and truncate it; False when the disk has no room even for that.

        SQLite does this by itself only once the WAL reaches 1000 pages (4 MB):
        on a disk with less room than that the WAL alone fills it, holding every
        entry, and no write could ever fit again (found on a 1 MiB tmpfs).
        """
        try:
            await self.db.checkpoint()
        except Exception as exc:
            if is_disk_full(exc):
                return False
            raise
        return True

    # -- writing ------------------------------------------------------------------
    def wall_ms(self) -> int:
        return int(self._wall() * 1000)

    async def append(self, items: Sequence[NewEntry]) -> list[Entry]:
        """Append in one transaction; returns the entries with their seq and hlc.

        If the device clock went back since the last entry, a clock entry
        saying so is appended with them. Raises ``DiskFull`` when the disk is
        full; then nothing of this call was stored and the head did not move.
        """
        if not items:
            return []

        def fn(c: Conn) -> list[Entry]:
            head = int(c.execute("SELECT value FROM state WHERE key = 'head'").fetchone()[0])
            # compared with the last *committed* device time (it rolls back with a failed write,
            # so readings retried after a full disk are not mistaken for a clock jump)
            prev_wall = int(c.execute("SELECT value FROM state WHERE key = 'last_wall'").fetchone()[0])
            out: list[Entry] = []
            for it in items:
                jump = prev_wall - it.wall_ms
                prev_wall = it.wall_ms
                if jump > WALL_TOLERANCE_MS:
                    head += 1
                    text = f"the device clock went back {jump / 1000:.1f} s"
                    out.append(Entry(head, self.clock.at(it.wall_ms), CLOCK, None, None, it.wall_ms, {"jump_ms": -jump, "text": text}))
                ts = self.clock.at(it.wall_ms)
                head += 1
                wall = it.wall_ms if abs(it.wall_ms - physical(ts)) > WALL_TOLERANCE_MS else None
                out.append(Entry(head, ts, it.kind, it.sensor, it.value, wall, it.body))
            self._insert(c, out, last_wall=prev_wall)
            return out

        entries = await self.write(fn)
        self.head = entries[-1].seq
        for e in entries:
            if e.kind == CLOCK:
                log.warning("%s; timestamps stay in order (hybrid logical clock). Check NTP or the RTC.", e.body["text"])  # type: ignore[index]
        return entries

    def _insert(self, c: Conn, out: list[Entry], last_wall: int | None = None) -> None:
        c.executemany(
            "INSERT INTO journal (seq, hlc, kind, sensor, value, wall, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(e.seq, e.hlc, e.kind, e.sensor, e.value, e.wall,
              json.dumps(e.body, separators=(",", ":"), ensure_ascii=False) if e.body is not None else None) for e in out],
        )
        for e in out:
            if e.kind in (OBSERVATION, FACT) and e.body:
                self._note(c, e)
        last = out[-1]
        values = [(str(last.seq), "head"), (str(self.clock.last), "hlc")]
        if last_wall is not None:
            values.append((str(last_wall), "last_wall"))
        c.executemany("UPDATE state SET value = ? WHERE key = ?", values)

    @staticmethod
    def _note(c: Conn, e: Entry) -> None:
        b = e.body or {}
        kind = KIND_NAMES[e.kind]
        key = b.get("key")
        if key and e.kind == FACT:
            c.execute("UPDATE notes SET superseded_by = ? WHERE key = ? AND superseded_by IS NULL", (e.seq, key))
        c.execute(
            "INSERT INTO notes (seq, kind, hlc, sensor, text, confidence, key) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (e.seq, kind, e.hlc, b.get("sensor"), b.get("text", ""), b.get("confidence"), key),
        )
        c.execute("INSERT INTO notes_fts (rowid, text) VALUES (?, ?)", (e.seq, b.get("text", "")))

    async def write(self, fn: Callable[[Conn], Any]) -> Any:
        """Run ``fn`` in one transaction on the writer; ``DiskFull`` when the disk is full."""
        try:
            return await self.db.write(fn)
        except Exception as exc:
            if is_disk_full(exc):
                raise disk_full(self.path, exc) from exc
            raise

    async def declare_sensor(self, name: str, kind: str, unit: str = "", label: str = "", binary: bool = False) -> Sensor:
        """The sensor's id; a new or changed sensor is announced with a journal entry first."""
        known = self.sensors.get(name)
        if known and (known.kind, known.unit, known.label, known.binary) == (kind, unit, label, binary):
            return known

        def fn(c: Conn) -> Sensor:
            head = int(c.execute("SELECT value FROM state WHERE key = 'head'").fetchone()[0])
            row = c.execute("SELECT id FROM sensors WHERE name = ?", (name,)).fetchone()
            sid = row[0] if row else (c.execute("SELECT coalesce(max(id), 0) + 1 FROM sensors").fetchone()[0])
            wall = self.wall_ms()
            ts = self.clock.at(wall)
            body = {"id": sid, "name": name, "kind": kind, "unit": unit, "label": label, "binary": binary}
            entry = Entry(head + 1, ts, SENSOR, sid, None, None, body)
            self._insert(c, [entry])
            c.execute(
                "INSERT INTO sensors (id, name, kind, unit, label, binary, seq) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET kind = excluded.kind, unit = excluded.unit, label = excluded.label,"
                " binary = excluded.binary, seq = excluded.seq",
                (sid, name, kind, unit, label, int(binary), entry.seq),
            )
            return Sensor(sid, name, kind, unit, label, binary)

        sensor = await self.write(fn)
        self.head += 1
        self.sensors[name] = sensor
        return sensor

    def sensor_by_id(self, sid: int | None) -> Sensor | None:
        for s in self.sensors.values():
            if s.id == sid:
                return s
        return None

    async def set_state(self, **values: Any) -> None:
        """Persist node state (acked, published, last_sync, offset_ms, ...).

        The in-memory ``acked``/``published`` are not touched: sync owns them,
        and an ack that lands while this write runs must not be undone by it.
        """

        def fn(c: Conn) -> None:
            c.executemany(
                "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [(k, str(v)) for k, v in values.items()],
            )

        await self.write(fn)

    async def state(self) -> dict[str, str]:
        return await self.db.read(lambda c: {r[0]: r[1] for r in c.execute("SELECT key, value FROM state")})

    # -- reading --------------------------------------------------------------------
    async def entries(self, first: int, last: int) -> list[Entry]:
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT seq, hlc, kind, sensor, value, wall, body FROM journal WHERE seq BETWEEN ? AND ? ORDER BY seq",
                (first, last),
            ).fetchall()
        )
        return [_entry(r) for r in rows]

    async def rows(self, first: int, last: int) -> list[tuple[Any, ...]]:
        """Raw rows (seq, hlc, kind, sensor, value, wall, body-json) for the wire."""
        return await self.db.read(  # type: ignore[no-any-return]
            lambda c: c.execute(
                "SELECT seq, hlc, kind, sensor, value, wall, body FROM journal WHERE seq BETWEEN ? AND ? ORDER BY seq",
                (first, last),
            ).fetchall()
        )

    async def tail(self, n: int = 20, kinds: Iterable[int] | None = None, *, before: int | None = None) -> list[Entry]:
        """The newest ``n`` entries of these kinds, oldest first."""
        ks = tuple(kinds) if kinds is not None else None

        def fn(c: Conn) -> list[Any]:
            sql = "SELECT seq, hlc, kind, sensor, value, wall, body FROM journal"
            where, args = [], []
            if ks is not None:
                where.append(f"kind IN ({','.join('?' * len(ks))})")
                args += list(ks)
            if before is not None:
                where.append("seq < ?")
                args.append(before)
            if where:
                sql += " WHERE " + " AND ".join(where)
            return c.execute(sql + " ORDER BY seq DESC LIMIT ?", (*args, n)).fetchall()

        return [_entry(r) for r in reversed(await self.db.read(fn))]

    async def after(self, seq: int, kinds: Iterable[int] | None = None, limit: int = 1000) -> list[Entry]:
        """Entries after ``seq`` (for ``logs --follow``)."""
        ks = tuple(kinds) if kinds is not None else tuple(KIND_NAMES)
        rows = await self.db.read(
            lambda c: c.execute(
                f"SELECT seq, hlc, kind, sensor, value, wall, body FROM journal WHERE seq > ? AND kind IN ({','.join('?' * len(ks))})"
                " ORDER BY seq LIMIT ?",
                (seq, *ks, limit),
            ).fetchall()
        )
        return [_entry(r) for r in rows]

    async def oldest(self) -> int:
        """The oldest seq still stored (head + 1 when empty)."""
        row = await self.db.read(lambda c: c.execute("SELECT min(seq) FROM journal").fetchone())
        return int(row[0]) if row and row[0] is not None else self.head + 1

    async def latest_readings(self) -> dict[int, Entry]:
        """The newest reading of each sensor (looks back over the last few thousand entries)."""

        def fn(c: Conn) -> list[Any]:
            out = []
            for (sid,) in c.execute("SELECT id FROM sensors").fetchall():
                r = c.execute(
                    "SELECT seq, hlc, kind, sensor, value, wall, body FROM journal WHERE seq > ? AND kind = 0 AND sensor = ?"
                    " ORDER BY seq DESC LIMIT 1",
                    (max(0, self.head - 20_000), sid),
                ).fetchone()
                if r:
                    out.append(r)
            return out

        return {e.sensor: e for e in map(_entry, await self.db.read(fn)) if e.sensor is not None}

    async def seq_at(self, t_ms: int) -> int:
        """The first seq at or after time ``t_ms`` (binary search: hlc grows with seq)."""

        def fn(c: Conn) -> int:
            return first_seq_at(c, "journal", "", (), t_ms, empty=self.head + 1)

        return await self.db.read(fn)  # type: ignore[no-any-return]
