"""The hub's side in SQLite: nodes, their entries (``PRIMARY KEY (node, seq)``), what is held, grants.

``ingest`` takes decoded batches and commits them in one transaction: new
rows are inserted; rows already held are counted as duplicates (and compared:
the same seq with another timestamp is a *conflict* — a node whose journal
was copied or reset — and is reported, never overwritten). Sensors, notes
(observations, facts, clock and events, with a full-text index) and hourly
aggregates are kept up to date from the new rows only, so a re-sent batch
changes nothing. ``edge_ranges`` tracks which seqs are held; ``contig`` is
the end of the first range, and the gaps after it are what the hub pulls.

Every read that serves a person goes through ``visible`` (grants): admins
see every node; others see the nodes (or ``site:NAME``) granted to them in
``[edge.hub].grants`` or through the admin API.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import time
from dataclasses import asdict, dataclass
from typing import Any, Iterable

import numpy as np

from shoal.edge.hlc import physical
from shoal.edge.journal import CLOCK, EVENT, FACT, KIND_NAMES, OBSERVATION, SENSOR, first_seq_at
from shoal.edge.wire import Batch, rows_of
from shoal.errors import BadInput, NotFound
from shoal.store.conversations import User
from shoal.store.db import Conn, Database

log = logging.getLogger(__name__)

NODE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
NOTE_KINDS = {OBSERVATION: "observation", FACT: "fact", CLOCK: "clock", EVENT: "event"}
HOUR = 3_600_000


@dataclass(slots=True)
class NodeRow:
    id: int
    name: str
    uid: str
    site: str
    location: str
    contig: int
    head: int
    first_seen: float
    last_seen: float | None
    last_batch: float | None
    offset_ms: int | None
    received: int
    duplicates: int
    conflicts: int
    rejected: int
    error: str | None

    @property
    def backlog(self) -> int:
        return max(0, self.head - self.contig)


def merge(ranges: list[list[int]], first: int, last: int) -> list[list[int]]:
    """``ranges`` (sorted, disjoint) with [first, last] added; adjacent ranges join."""
    out: list[list[int]] = []
    placed = False
    for a, b in ranges:
        if b + 1 < first:
            out.append([a, b])
        elif last + 1 < a:
            if not placed:
                out.append([first, last])
                placed = True
            out.append([a, b])
        else:
            first, last = min(a, first), max(b, last)
    if not placed:
        out.append([first, last])
    return sorted(out)


def contig_of(ranges: list[list[int]]) -> int:
    return ranges[0][1] if ranges and ranges[0][0] <= 1 else 0


def holes_of(ranges: list[list[int]], head: int) -> list[list[int]]:
    """Gaps after contig, up to the node's head: what the hub lacks."""
    holes = []
    prev = contig_of(ranges)
    for a, b in ranges:
        if b <= prev:
            continue
        if a > prev + 1:
            holes.append([prev + 1, a - 1])
        prev = max(prev, b)
    if head > prev:
        holes.append([prev + 1, head])
    return holes


class HubStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._nodes: dict[str, NodeRow] = {}
        self._ranges: dict[int, list[list[int]]] = {}
        self._loaded = False

    async def load(self) -> None:
        def fn(c: Conn) -> tuple[list[Any], list[Any]]:
            return (
                c.execute("SELECT * FROM edge_nodes").fetchall(),
                c.execute("SELECT node, first, last FROM edge_ranges ORDER BY node, first").fetchall(),
            )

        nodes, ranges = await self.db.read(fn)
        self._nodes = {r["name"]: NodeRow(**{k: r[k] for k in r.keys()}) for r in nodes}
        self._ranges = {}
        for n, a, b in ranges:
            self._ranges.setdefault(n, []).append([a, b])
        self._loaded = True

    async def _ensure(self) -> None:
        if not self._loaded:
            await self.load()

    # -- the protocol -------------------------------------------------------------------
    async def hello(self, req: dict[str, Any]) -> dict[str, Any]:
        """A node says who it is and how far it got; the reply says what the hub holds."""
        await self._ensure()
        name, uid = str(req.get("node", "")), str(req.get("uid", ""))
        if not NODE_NAME.match(name) or not uid:
            return {"ok": False, "error": "the hello has no valid node name or uid", "hint": "upgrade shoal on the node"}
        now = time.time()
        head, first = int(req.get("head", 0)), max(1, int(req.get("first", 1)))
        offset = int(now * 1000) - int(req.get("wall_ms", now * 1000))
        node = self._nodes.get(name)
        if node is not None and node.uid != uid:
            msg = (f"the hub already knows a node named {name!r} with another journal (uid …{node.uid[-8:]}, "
                   f"this one …{uid[-8:]}): its journal was reset, or two nodes share the name")
            hint = (f"give this node its own name (edge.node), or, if the reset was on purpose, "
                    f"an admin runs `shoal edge forget {name}` on the hub")
            await self.db.write(lambda c: c.execute(
                "UPDATE edge_nodes SET rejected = rejected + 1, error = ? WHERE id = ?", (msg, node.id)))
            node.rejected += 1
            node.error = msg
            return {"ok": False, "error": msg, "hint": hint}

        def fn(c: Conn) -> NodeRow:
            if node is None:
                nid = c.execute(
                    "INSERT INTO edge_nodes (name, uid, site, location, first_seen) VALUES (?, ?, ?, ?, ?)",
                    (name, uid, str(req.get("site", "")), str(req.get("location", "")), now),
                ).lastrowid
                row = NodeRow(nid, name, uid, "", "", 0, 0, now, None, None, None, 0, 0, 0, 0, None)
            else:
                row = NodeRow(**asdict(node))
            row.site, row.location = str(req.get("site", ""))[:64], str(req.get("location", ""))[:120]
            row.head, row.last_seen, row.error = max(row.head, head), now, None
            ranges = [list(r) for r in self._ranges.get(row.id, [])]
            contig = contig_of(ranges)
            if first > contig + 1:
                # the node removed these before this hub ever had them (it ran without a hub)
                c.execute("INSERT OR REPLACE INTO edge_pruned (node, first, last, at) VALUES (?, ?, ?, ?)",
                          (row.id, contig + 1, first - 1, now))
                ranges = merge(ranges, contig + 1, first - 1)
                self._write_ranges(c, row.id, ranges)
            row.contig = contig_of(ranges)
            if row.offset_ms is None or abs(offset - row.offset_ms) > 1000:
                c.execute("INSERT OR REPLACE INTO edge_clock (node, from_seq, offset_ms, at) VALUES (?, ?, ?, ?)",
                          (row.id, row.contig + 1, offset, now))
            row.offset_ms = offset
            c.execute(
                "UPDATE edge_nodes SET site = ?, location = ?, head = ?, last_seen = ?, offset_ms = ?, contig = ?, error = NULL"
                " WHERE id = ?",
                (row.site, row.location, row.head, now, offset, row.contig, row.id),
            )
            self._ranges[row.id] = ranges
            return row

        row = await self.db.write(fn)
        self._nodes[name] = row
        return {"ok": True, "contig": row.contig, "holes": holes_of(self._ranges.get(row.id, []), row.head),
                "hub_ms": int(time.time() * 1000)}

    async def ingest(self, batches: list[Batch]) -> dict[str, dict[str, Any]]:
        """Commit batches in one transaction; per node: contig, inserted, duplicates, conflicts, rejected."""
        await self._ensure()
        now = time.time()

        def fn(c: Conn) -> tuple[dict[str, dict[str, Any]], dict[str, NodeRow], dict[int, list[list[int]]]]:
            out: dict[str, dict[str, Any]] = {}
            rows_by: dict[str, NodeRow] = {}
            ranges_by: dict[int, list[list[int]]] = {}
            for b in batches:
                res = out.setdefault(b.node, {"inserted": 0, "duplicates": 0, "conflicts": 0, "rejected": 0})
                known = rows_by.get(b.node) or self._nodes.get(b.node)
                if known is None and NODE_NAME.match(b.node) and b.uid:
                    # first heard of through the stream (it published while the hub was away)
                    nid = c.execute("INSERT INTO edge_nodes (name, uid, first_seen) VALUES (?, ?, ?)",
                                    (b.node, b.uid, now)).lastrowid
                    known = NodeRow(nid, b.node, b.uid, "", "", 0, 0, now, None, None, None, 0, 0, 0, 0, None)
                if known is None or known.uid != b.uid:
                    res["rejected"] += 1
                    if known is not None:
                        c.execute("UPDATE edge_nodes SET rejected = rejected + 1 WHERE id = ?", (known.id,))
                    continue
                node = rows_by.setdefault(b.node, NodeRow(**asdict(known)))
                ranges = ranges_by.setdefault(node.id, [list(r) for r in self._ranges.get(node.id, [])])
                inserted, dups, conflicts = self._insert(c, node, b)
                res["inserted"] += inserted
                res["duplicates"] += dups
                res["conflicts"] += conflicts
                for a, z in b.pruned:
                    c.execute("INSERT OR REPLACE INTO edge_pruned (node, first, last, at) VALUES (?, ?, ?, ?)", (node.id, a, z, now))
                ranges[:] = merge(ranges, b.first, b.last)
                node.received += inserted
                node.duplicates += dups
                node.conflicts += conflicts
                node.head = max(node.head, b.last)
                node.last_batch = now
                if conflicts:
                    node.error = (f"{conflicts} entries arrived under sequence numbers the hub already holds with other "
                                  "content: the node's journal was copied or reset; the hub kept the first version")
            for node in rows_by.values():
                ranges = ranges_by[node.id]
                self._write_ranges(c, node.id, ranges)
                node.contig = contig_of(ranges)
                c.execute(
                    "UPDATE edge_nodes SET contig = ?, head = ?, last_batch = ?, received = ?, duplicates = ?, conflicts = ?,"
                    " error = coalesce(?, error) WHERE id = ?",
                    (node.contig, node.head, node.last_batch, node.received, node.duplicates, node.conflicts,
                     node.error, node.id),
                )
                out[node.name]["contig"] = node.contig
            return out, rows_by, ranges_by

        out, rows_by, ranges_by = await self.db.write(fn)
        self._nodes.update(rows_by)
        self._ranges.update(ranges_by)
        return out

    def _insert(self, c: Conn, node: NodeRow, b: Batch) -> tuple[int, int, int]:
        if b.count == 0:
            return 0, 0, 0
        lo, hi = int(b.seq[0]), int(b.seq[-1])
        held = c.execute("SELECT seq, hlc FROM edge_entries WHERE node = ? AND seq BETWEEN ? AND ?", (node.id, lo, hi)).fetchall()
        keep = np.ones(b.count, dtype=bool)
        conflicts = 0
        if held:
            pos = {int(s): i for i, s in enumerate(b.seq.tolist())}
            for s, h in held:
                i = pos.get(s)
                if i is not None:
                    keep[i] = False
                    conflicts += int(b.hlc[i]) != h
        # plain readings (no body, device clock agreeing) bind five values, not eight: that is
        # most of a backlog, and binding the NULLs cost as much as the insert itself
        plain = keep & (b.kind == 0) & (b.wall == 0) & (b.sensor != 0) & ~np.isnan(b.value)
        if plain.any():
            n = int(plain.sum())
            c.executemany(
                "INSERT OR IGNORE INTO edge_entries (node, seq, hlc, kind, sensor, value) VALUES (?, ?, ?, 0, ?, ?)",
                zip(itertools.repeat(node.id, n), b.seq[plain].tolist(), b.hlc[plain].tolist(),
                    b.sensor[plain].tolist(), b.value[plain].tolist()),
            )
        rest = keep & ~plain
        rows: list[tuple[Any, ...]] = []
        if rest.any():
            full = rows_of(b, node.id)
            rows = [r for r, k in zip(full, rest.tolist()) if k]
            c.executemany("INSERT OR IGNORE INTO edge_entries (node, seq, hlc, kind, sensor, value, wall, body)"
                          " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        self._derive(c, node, b, keep, rows)
        return int(keep.sum()), len(held), conflicts

    def _derive(self, c: Conn, node: NodeRow, b: Batch, keep: np.ndarray, rows: list[tuple[Any, ...]]) -> None:
        """Sensors, notes and hourly aggregates from the newly inserted rows."""
        readings = keep & (b.kind == 0) & ~np.isnan(b.value)
        if readings.any():
            hours = (b.hlc[readings] >> 16) // HOUR
            v = b.value[readings]
            # one integer key per (sensor, hour): a 1-D unique is ten times faster than rows of pairs
            keys = (b.sensor[readings].astype(np.int64) << 32) | hours
            ukeys, inv = np.unique(keys, return_inverse=True)
            inv = inv.reshape(-1)
            uniq = np.stack([ukeys >> 32, (ukeys & 0xFFFFFFFF) * HOUR], axis=1)
            n = np.bincount(inv)
            total = np.bincount(inv, weights=v)
            mn = np.full(len(uniq), np.inf)
            mx = np.full(len(uniq), -np.inf)
            np.minimum.at(mn, inv, v)
            np.maximum.at(mx, inv, v)
            c.executemany(
                "INSERT INTO edge_hourly (node, sensor, t, n, sum, min, max) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(node, sensor, t) DO UPDATE SET n = n + excluded.n, sum = sum + excluded.sum,"
                " min = min(min, excluded.min), max = max(max, excluded.max)",
                [(node.id, int(a), int(tt), int(k), float(tot), float(lo), float(hi))
                 for (a, tt), k, tot, lo, hi in zip(uniq.tolist(), n.tolist(), total.tolist(), mn.tolist(), mx.tolist())],
            )
        if not b.bodies:
            return
        offset = node.offset_ms or 0
        place = " ".join(x for x in (node.name, node.location, node.site) if x)
        for r in rows:
            _, seq, hlc, kind, _sensor, _value, _wall, body = r
            if body is None:
                continue
            try:
                data = json.loads(body)
            except ValueError:
                continue
            if kind == SENSOR:
                c.execute(
                    "INSERT OR REPLACE INTO edge_sensors (node, id, name, kind, unit, label, binary) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (node.id, int(data.get("id", 0)), str(data.get("name", "")), str(data.get("kind", "")),
                     str(data.get("unit", "")), str(data.get("label", "")), int(bool(data.get("binary")))),
                )
            elif kind in NOTE_KINDS:
                text = str(data.get("text", ""))[:2000]
                key = data.get("key") if kind == FACT else None
                if key:
                    c.execute("UPDATE edge_notes SET superseded_by = ? WHERE node = ? AND key = ? AND superseded_by IS NULL"
                              " AND seq < ?", (seq, node.id, key, seq))
                c.execute(
                    "INSERT OR IGNORE INTO edge_notes (node, seq, kind, hlc, t_hub, sensor, text, confidence, key, body)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (node.id, seq, NOTE_KINDS[kind], hlc, physical(hlc) + offset, data.get("sensor"), text,
                     data.get("confidence"), key, body),
                )
                c.execute("INSERT INTO edge_notes_fts (text, place, node, seq) VALUES (?, ?, ?, ?)", (text, place, node.id, seq))

    @staticmethod
    def _write_ranges(c: Conn, node: int, ranges: list[list[int]]) -> None:
        c.execute("DELETE FROM edge_ranges WHERE node = ?", (node,))
        c.executemany("INSERT INTO edge_ranges (node, first, last) VALUES (?, ?, ?)", [(node, a, b) for a, b in ranges])

    def holes(self, name: str) -> list[list[int]]:
        node = self._nodes.get(name)
        if node is None:
            return []
        return holes_of(self._ranges.get(node.id, []), node.head)

    def known(self) -> list[NodeRow]:
        return list(self._nodes.values())

    async def forget(self, name: str) -> int:
        """Remove a node and everything it sent (an admin, after a deliberate journal reset)."""
        await self._ensure()
        node = self._nodes.get(name)
        if node is None:
            raise NotFound(f"the hub knows no node named {name!r}")

        def fn(c: Conn) -> int:
            n = c.execute("DELETE FROM edge_entries WHERE node = ?", (node.id,)).rowcount
            for table in ("edge_ranges", "edge_pruned", "edge_hourly", "edge_sensors", "edge_clock", "edge_notes"):
                c.execute(f"DELETE FROM {table} WHERE node = ?", (node.id,))
            c.execute("DELETE FROM edge_notes_fts WHERE node = ?", (node.id,))
            c.execute("DELETE FROM edge_nodes WHERE id = ?", (node.id,))
            return n

        n = await self.db.write(fn)
        self._nodes.pop(name, None)
        self._ranges.pop(node.id, None)
        return n

    # -- reads for people ----------------------------------------------------------------
    async def nodes(self) -> list[NodeRow]:
        await self.load()
        return sorted(self._nodes.values(), key=lambda n: n.name)

    async def node(self, name: str, user: User | None = None, grants: dict[str, list[str]] | None = None) -> NodeRow:
        """The node, if ``user`` may see it; NotFound otherwise (someone else's node is a 404)."""
        await self.load()
        node = self._nodes.get(name)
        if node is None or (user is not None and name not in await self.visible(user, grants or {})):
            raise NotFound(f"no node named {name!r}", hint="`GET /api/nodes` lists the nodes you may see")
        return node

    async def counts(self, name: str) -> dict[str, int]:
        node = await self.node(name)
        rows = await self.db.read(lambda c: c.execute(
            "SELECT kind, count(*) FROM edge_entries WHERE node = ? GROUP BY kind", (node.id,)).fetchall())
        return {KIND_NAMES.get(k, str(k)): n for k, n in rows}

    async def sensors(self, name: str) -> list[dict[str, Any]]:
        node = await self.node(name)
        rows = await self.db.read(lambda c: c.execute(
            "SELECT id, name, kind, unit, label, binary FROM edge_sensors WHERE node = ? ORDER BY id", (node.id,)).fetchall())
        out = []
        for r in rows:
            last = await self.db.read(lambda c, sid=r["id"]: c.execute(
                "SELECT seq, hlc, value FROM edge_entries WHERE node = ? AND seq >= ? AND kind = 0 AND sensor = ?"
                " ORDER BY seq DESC LIMIT 1", (node.id, max(0, node.contig - 50_000), sid)).fetchone())
            out.append({"id": r["id"], "name": r["name"], "kind": r["kind"], "unit": r["unit"], "label": r["label"],
                        "binary": bool(r["binary"]), "last": None if last is None else
                        {"seq": last[0], "time": physical(last[1]) / 1000.0, "value": last[2]}})
        return out

    async def seq_at(self, node: int, t_ms: int) -> int:
        """The first seq of a node at or after ``t_ms`` (binary search, as on the node)."""

        def fn(c: Conn) -> int:
            return first_seq_at(c, "edge_entries", "node = ? AND ", (node,), t_ms, empty=1)

        return await self.db.read(fn)  # type: ignore[no-any-return]

    async def series(self, name: str, sensor: int, since_ms: int, until_ms: int, points: int = 400) -> list[tuple[int, float, float, float, int]]:
        """``(t, mean, min, max, n)`` buckets of one sensor: raw rows for two days or less, else hourly."""
        node = await self.node(name)
        bucket = max(1000, (until_ms - since_ms) // max(1, points))
        if until_ms - since_ms <= 2 * 86_400_000 and bucket < HOUR:
            lo, hi = await self.seq_at(node.id, since_ms), await self.seq_at(node.id, until_ms) - 1
            rows = await self.db.read(lambda c: c.execute(
                "SELECT ((hlc >> 16) / ?) * ? AS b, avg(value), min(value), max(value), count(*) FROM edge_entries"
                " WHERE node = ? AND seq BETWEEN ? AND ? AND kind = 0 AND sensor = ? GROUP BY b ORDER BY b",
                (bucket, bucket, node.id, lo, hi, sensor)).fetchall())
        else:
            bucket = max(bucket, HOUR)
            rows = await self.db.read(lambda c: c.execute(
                "SELECT (t / ?) * ? AS b, sum(sum) / sum(n), min(min), max(max), sum(n) FROM edge_hourly"
                " WHERE node = ? AND sensor = ? AND t >= ? AND t < ? GROUP BY b ORDER BY b",
                (bucket, bucket, node.id, sensor, since_ms, until_ms)).fetchall())
        return [(int(r[0]), float(r[1]), float(r[2]), float(r[3]), int(r[4])) for r in rows]

    async def notes(
        self, nodes: Iterable[str], *, kinds: Iterable[str] = ("observation", "fact"), limit: int = 50,
        since_ms: int | None = None, until_ms: int | None = None, current_facts: bool = True,
    ) -> list[dict[str, Any]]:
        """Newest notes of these nodes first (callers pass only nodes the user may see)."""
        await self._ensure()
        ids = {self._nodes[n].id: self._nodes[n] for n in nodes if n in self._nodes}
        ks = list(kinds)
        if not ids or not ks:
            return []
        sql = (f"SELECT * FROM edge_notes WHERE node IN ({','.join('?' * len(ids))}) AND kind IN ({','.join('?' * len(ks))})")
        args: list[Any] = [*ids, *ks]
        if since_ms is not None:
            sql += " AND t_hub >= ?"
            args.append(since_ms)
        if until_ms is not None:
            sql += " AND t_hub < ?"
            args.append(until_ms)
        if current_facts:
            sql += " AND superseded_by IS NULL"
        rows = await self.db.read(lambda c: c.execute(sql + " ORDER BY t_hub DESC LIMIT ?", (*args, limit)).fetchall())
        return [note_dict(r, ids[r["node"]]) for r in rows]

    async def search_notes(self, nodes: Iterable[str], query: str, limit: int = 20) -> list[dict[str, Any]]:
        """Full-text search over notes of these nodes (bm25 order)."""
        await self._ensure()
        ids = {self._nodes[n].id: self._nodes[n] for n in nodes if n in self._nodes}
        words = [w for w in re.findall(r"[A-Za-z0-9]+", query.lower()) if len(w) > 2]
        if not ids or not words:
            return []
        match = " OR ".join(f'"{w}"' for w in words)

        def fn(c: Conn) -> list[Any]:
            hits = c.execute(
                f"SELECT node, seq, bm25(edge_notes_fts) AS score FROM edge_notes_fts WHERE edge_notes_fts MATCH ?"
                f" AND node IN ({','.join('?' * len(ids))}) ORDER BY score LIMIT ?",
                (match, *ids, limit * 3),
            ).fetchall()
            out = []
            for n, s, score in hits:
                r = c.execute("SELECT * FROM edge_notes WHERE node = ? AND seq = ? AND superseded_by IS NULL", (n, s)).fetchone()
                if r is not None:
                    out.append((r, score))
            return out[:limit]

        return [{**note_dict(r, ids[r["node"]]), "score": -float(score)} for r, score in await self.db.read(fn)]

    # -- grants -------------------------------------------------------------------------
    async def visible(self, user: User, config_grants: dict[str, list[str]]) -> set[str]:
        """Names of the nodes ``user`` may see."""
        await self._ensure()
        if user.is_admin:
            return set(self._nodes)
        keys = {k for k, who in config_grants.items() if any(p in ("users", "*", user.name) for p in who)}
        keys |= {r[0] for r in await self.db.read(lambda c: c.execute(
            "SELECT node FROM edge_grants WHERE user_id = ?", (user.id,)).fetchall())}
        return {n.name for n in self._nodes.values() if n.name in keys or (n.site and f"site:{n.site}" in keys)}

    async def grants(self) -> list[dict[str, Any]]:
        rows = await self.db.read(lambda c: c.execute(
            "SELECT g.node, u.name AS user, g.granted_by, g.created_at FROM edge_grants g JOIN users u ON u.id = g.user_id"
            " ORDER BY g.node, u.name").fetchall())
        return [dict(r) for r in rows]

    async def grant(self, key: str, user: User, *, by: str) -> None:
        if not re.match(r"^(site:)?[A-Za-z0-9_-]{1,64}$", key):
            raise BadInput(f"{key!r} is not a node name or site:NAME")
        await self.db.write(lambda c: c.execute(
            "INSERT OR IGNORE INTO edge_grants (node, user_id, granted_by, created_at) VALUES (?, ?, ?, ?)",
            (key, user.id, by, time.time())))

    async def revoke(self, key: str, user: User) -> bool:
        n = await self.db.write(lambda c: c.execute(
            "DELETE FROM edge_grants WHERE node = ? AND user_id = ?", (key, user.id)).rowcount)
        return bool(n)


def note_dict(r: Any, node: NodeRow) -> dict[str, Any]:
    body = json.loads(r["body"])
    return {
        "node": node.name, "seq": r["seq"], "kind": r["kind"], "text": r["text"], "sensor": r["sensor"],
        "confidence": r["confidence"], "time": r["t_hub"] / 1000.0, "node_time": physical(r["hlc"]) / 1000.0,
        "cites": body.get("cites", []), "rule": body.get("rule"), "method": body.get("method"),
        "basis": body.get("basis"), "location": node.location, "superseded_by": r["superseded_by"],
    }
