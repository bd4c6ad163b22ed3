"""A node that was offline for 90 days syncs its backlog to the hub (issue 16, item 9).

The node's journal gets 90 days of readings at 1 reading/s (7,776,000: four
simulated sensors read in turn — temperature, humidity, motion, power — with
daily cycles and injected anomalies), plus an observation every 30 minutes
and a fact a day. Then, timed: ``shoal edge sync`` (a real process) sends
the backlog over a real nats-server with JetStream to ``shoal edge hub`` (a
real process, the hub's consumer that ``shoal up`` runs too), until the hub
has committed every entry. Afterwards every entry is compared, node against
hub, by (node, seq): lost, duplicated and differing entries are counted.

Baseline, in the same run: the naive design — one reading per JetStream
message, each publish awaiting its ack, the hub inserting and committing
each one — run on a sample (``--baseline-sample`` readings, real processes
too) and extrapolated linearly to the whole backlog (it would take tens of
minutes in full).

    .venv/bin/python bench/edge_sync.py                # 90 days
    .venv/bin/python bench/edge_sync.py --days 7       # quicker

The last line is ``name: value`` pairs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _stack import ROOT, child_env, free_port, start_nats, stop
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

sys.path.insert(0, str(ROOT / "src"))

console = Console(stderr=True)
SENSORS = [  # name, unit, simulated pattern
    ("temperature", "°C", {"pattern": "daily", "mean": 19.0, "amplitude": 4.0, "noise": 0.3, "decimals": 2,
                           "anomalies": [{"every": 6 * 86400, "at": 3 * 3600, "duration": 1800, "add": 9.0}]}),
    ("humidity", "%", {"pattern": "daily", "mean": 55.0, "amplitude": 8.0, "peak_hour": 5.0, "noise": 1.0, "decimals": 1}),
    ("motion", "", {"pattern": "motion", "active_hours": [(7.0, 9.0), (18.0, 22.0)], "active_rate": 0.2, "idle_rate": 0.001}),
    ("power", "W", {"pattern": "daily", "mean": 140.0, "amplitude": 60.0, "peak_hour": 19.0, "noise": 15.0, "decimals": 0}),
]


def used_bytes(db: Path) -> int:
    c = sqlite3.connect(db)
    try:
        page, pages, free = (c.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_size", "page_count", "freelist_count"))
        return int(page * (pages - free))
    finally:
        c.close()


# ------------------------------------------------------------------------------ the backlog
async def build_backlog(home: Path, days: float, rate: float) -> dict[str, int]:
    from pydantic import TypeAdapter

    from shoal.edge.config import SensorConfig
    from shoal.edge.journal import FACT, OBSERVATION, READING, Journal, NewEntry
    from shoal.edge.sensors import create_sensor

    n = int(days * 86400 * rate)
    start = time.time() - days * 86400 - 60
    t = start + np.arange(n, dtype=np.float64) / rate
    which = np.arange(n) % len(SENSORS)
    values = np.zeros(n)
    adapter: TypeAdapter = TypeAdapter(SensorConfig)  # type: ignore[type-arg]
    for k, (name, unit, opts) in enumerate(SENSORS):
        src = create_sensor(adapter.validate_python({"name": name, "kind": "simulated", "unit": unit, "interval": len(SENSORS) / rate,
                                                     "binary": name == "motion", **opts}))
        idx = which == k
        values[idx] = src.values(t[idx])  # type: ignore[attr-defined]
    clock = {"t": start}
    j = await Journal.open(home / "edge.db", node="garage", wall=lambda: clock["t"])
    ids = [(await j.declare_sensor(name, "simulated", unit, binary=name == "motion")).id for name, unit, _ in SENSORS]
    sensor_ids = np.array(ids)[which].tolist()
    walls = (t * 1000).astype(np.int64).tolist()
    vals = values.tolist()
    obs_every, fact_every = int(1800 * rate), int(86400 * rate)
    observations = facts = 0
    chunk = 100_000
    with Progress(TextColumn("[bold]backlog[/] {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task(f"{days:g} days at {rate:g}/s", total=n)
        for a in range(0, n, chunk):
            items = [NewEntry(READING, walls[i], sensor_ids[i], vals[i]) for i in range(a, min(n, a + chunk))]
            extra = []
            for i in range(((a + obs_every - 1) // obs_every) * obs_every, min(n, a + chunk), obs_every):
                k = which[i]
                extra.append((i, NewEntry(OBSERVATION, walls[i], body={
                    "text": f"In the garage, {SENSORS[k][0]} was {vals[i]:g} {SENSORS[k][1]}.".replace("  ", " ").replace(" .", "."),
                    "sensor": SENSORS[k][0], "rule": "sample", "confidence": 0.5, "method": "template",
                    "cites": [[0, vals[i]]]})))
                observations += 1
            for i in range(((a + fact_every - 1) // fact_every) * fact_every, min(n, a + chunk), fact_every):
                extra.append((i, NewEntry(FACT, walls[i], body={"key": "routine:motion", "text": "Motion in the garage is usually active "
                                                                "07:00–09:00, 18:00–22:00.", "confidence": 0.8})))
                facts += 1
            for i, e in reversed(extra):
                items.insert(i - a + 1, e)
            clock["t"] = walls[min(n, a + chunk) - 1] / 1000
            await j.append(items)
            bar.update(task, advance=min(chunk, n - a))
    head = j.head
    await j.db.checkpoint()
    await j.close()
    return {"readings": n, "observations": observations, "facts": facts, "head": head}


# ------------------------------------------------------------------------------ compare
def compare(node_db: Path, hub_db: Path, head: int) -> dict[str, int]:
    """Every entry, node against hub, by (node, seq): lost, duplicated, differing."""
    a = sqlite3.connect(node_db)
    b = sqlite3.connect(hub_db)
    nid = b.execute("SELECT id FROM edge_nodes WHERE name = 'garage'").fetchone()[0]
    count, distinct = b.execute("SELECT count(*), count(DISTINCT seq) FROM edge_entries WHERE node = ?", (nid,)).fetchone()
    step, differ, seen = 500_000, 0, 0
    for lo in range(1, head + 1, step):
        hi = lo + step - 1
        x = a.execute("SELECT seq, hlc, kind, sensor, value, wall, body FROM journal WHERE seq BETWEEN ? AND ? ORDER BY seq", (lo, hi)).fetchall()
        y = b.execute("SELECT seq, hlc, kind, sensor, value, wall, body FROM edge_entries WHERE node = ? AND seq BETWEEN ? AND ? ORDER BY seq",
                      (nid, lo, hi)).fetchall()
        ys = {r[0]: r for r in y} if len(x) != len(y) else None
        for i, r in enumerate(x):
            other = ys.get(r[0]) if ys is not None else y[i]
            if other is not None:
                seen += 1
                differ += other != r
    a.close()
    b.close()
    return {"lost": head - seen, "duplicates": count - distinct, "differing": differ, "hub_entries": count}


def wire_bytes(node_db: Path, head: int, batch: int) -> int:
    """Bytes the sync sent: the same deterministic batches, encoded again."""
    from shoal.edge.wire import encode

    c = sqlite3.connect(node_db)
    uid = c.execute("SELECT value FROM state WHERE key = 'uid'").fetchone()[0]
    total = 0
    for lo in range(1, head + 1, batch):
        hi = min(head, lo + batch - 1)
        rows = c.execute("SELECT seq, hlc, kind, sensor, value, wall, body FROM journal WHERE seq BETWEEN ? AND ? ORDER BY seq",
                         (lo, hi)).fetchall()
        total += len(encode("garage", uid, lo, hi, rows))
    c.close()
    return total


# ------------------------------------------------------------------------------ baseline
async def baseline_publish(url: str, node_db: Path, sample: int) -> float:
    """One reading per message, each publish awaiting its ack; returns seconds until the consumer committed all."""
    import nats
    from nats.js.api import RetentionPolicy, StorageType, StreamConfig

    c = sqlite3.connect(node_db)
    rows = c.execute("SELECT seq, hlc, sensor, value FROM journal WHERE kind = 0 ORDER BY seq LIMIT ?", (sample,)).fetchall()
    c.close()
    nc = await nats.connect(url)
    js = nc.jetstream(timeout=10)
    await js.add_stream(StreamConfig(name="NAIVE", subjects=["naive.>"], retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE))
    done = asyncio.Event()

    async def finished(_msg: object) -> None:
        done.set()

    await nc.subscribe("naive.done", cb=finished)
    started = time.perf_counter()
    for seq, hlc, sensor, value in rows:
        await js.publish("naive.garage", json.dumps({"node": "garage", "seq": seq, "hlc": hlc, "sensor": sensor, "value": value}).encode())
    await asyncio.wait_for(done.wait(), timeout=1800)
    seconds = time.perf_counter() - started
    await nc.close()
    return seconds


async def baseline_consume(url: str, db: str, n: int) -> None:
    """The naive hub: one message, one INSERT, one commit, one ack."""
    import nats

    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS e (node TEXT, seq INTEGER, hlc INTEGER, sensor INTEGER, value REAL, PRIMARY KEY (node, seq)) WITHOUT ROWID")
    nc = await nats.connect(url)
    js = nc.jetstream(timeout=10)
    while True:
        try:
            sub = await js.pull_subscribe("naive.>", durable="naive", stream="NAIVE")
            break
        except Exception:
            await asyncio.sleep(0.1)
    got = 0
    while got < n:
        try:
            (msg,) = await sub.fetch(1, timeout=5)
        except Exception:
            continue
        r = json.loads(msg.data)
        conn.execute("INSERT OR IGNORE INTO e VALUES (?, ?, ?, ?, ?)", (r["node"], r["seq"], r["hlc"], r["sensor"], r["value"]))
        await msg.ack_sync()
        got += 1
    await nc.publish("naive.done", b"")
    await nc.flush()
    await nc.close()


# ------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=float, default=90)
    ap.add_argument("--rate", type=float, default=1.0, help="readings per second on the node")
    ap.add_argument("--baseline-sample", type=int, default=20_000)
    ap.add_argument("--keep", type=Path, help="keep the homes here")
    ap.add_argument("--baseline-consumer", nargs=3, metavar=("URL", "DB", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline_consumer:
        url, db, n = args.baseline_consumer
        asyncio.run(baseline_consume(url, db, int(n)))
        return

    base = Path(args.keep or tempfile.mkdtemp(prefix="edge-sync-"))
    base.mkdir(parents=True, exist_ok=True)
    node_home, hub_home, store = base / "node", base / "hub", base / "nats"
    for d in (node_home, hub_home, store):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    (node_home / "shoal.toml").write_text(f'[edge]\nnode = "garage"\nlocation = "garage"\nnats = "{url}"\nembed = false\n')
    (hub_home / "shoal.toml").write_text(f'[edge.hub]\nenabled = true\nnats = "{url}"\nmax_stream_mb = 2048\n')
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(start_nats(store, port, timeout=15))
        t0 = time.perf_counter()
        info = asyncio.run(build_backlog(node_home, args.days, args.rate))
        fill_seconds = time.perf_counter() - t0
        console.print(f"backlog: {info['readings']:,} readings, {info['observations']:,} observations, {info['facts']} facts "
                      f"in {fill_seconds:.1f} s")

        # the hub: its schema exists before the clock starts (as on a hub that has been running)
        subprocess.run([sys.executable, "-c", "import asyncio; from shoal.store.db import Database; from shoal.config import Settings;"
                        "asyncio.run(Database(Settings().db_path).open())"], env=child_env(hub_home), check=True)
        hub_before = used_bytes(hub_home / "shoal.db")
        hub = subprocess.Popen([sys.executable, "-m", "shoal", "edge", "hub"], env=child_env(hub_home),
                               stdout=subprocess.DEVNULL, stderr=open(base / "hub.log", "wb"))
        procs.append(hub)
        time.sleep(2.0)  # the hub's process has started and created its stream

        console.print("syncing: [bold]shoal edge sync[/] → nats-server → [bold]shoal edge hub[/] …")
        t0 = time.perf_counter()
        sync = subprocess.run([sys.executable, "-m", "shoal", "edge", "sync", "--timeout", "1800"], env=child_env(node_home),
                              stdout=open(base / "sync.log", "wb"), stderr=subprocess.STDOUT)
        sync_seconds = time.perf_counter() - t0
        if sync.returncode != 0:
            raise SystemExit(f"the sync failed: see {base / 'sync.log'} and {base / 'hub.log'}")
        hub.send_signal(signal.SIGTERM)
        hub.wait(timeout=60)

        console.print("comparing every entry, node against hub …")
        verdict = compare(node_home / "edge.db", hub_home / "shoal.db", info["head"])
        hub_bytes = used_bytes(hub_home / "shoal.db") - hub_before
        node_bytes = used_bytes(node_home / "edge.db")
        wire = wire_bytes(node_home / "edge.db", info["head"], 20_000)

        console.print(f"baseline: one reading per message with an ack, on {args.baseline_sample:,} readings …")
        consumer = subprocess.Popen([sys.executable, __file__, "--baseline-consumer", url, str(base / "naive.db"), str(args.baseline_sample)],
                                    env=child_env(hub_home))
        procs.append(consumer)
        baseline_sample_seconds = asyncio.run(baseline_publish(url, node_home / "edge.db", args.baseline_sample))
        consumer.wait(timeout=60)
        baseline_rate = args.baseline_sample / baseline_sample_seconds
        baseline_seconds = info["readings"] / baseline_rate
    finally:
        stop(procs[::-1], timeout=15)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)

    readings = info["readings"]
    out = {
        "readings": readings, "observations": info["observations"], "facts": info["facts"], "entries": info["head"],
        "sync_seconds": round(sync_seconds, 2), "readings_per_s": round(readings / sync_seconds),
        "bytes_per_reading": round(hub_bytes / info["head"], 2),
        "edge_bytes_per_reading": round(node_bytes / info["head"], 2),
        "wire_bytes_per_reading": round(wire / info["head"], 2),
        "lost": verdict["lost"], "duplicates": verdict["duplicates"], "differing": verdict["differing"],
        "baseline_sync_seconds": round(baseline_seconds, 1), "baseline_readings_per_s": round(baseline_rate),
        "baseline_sample": args.baseline_sample, "speedup": round(baseline_seconds / sync_seconds, 1),
        "goal_60s": int(sync_seconds <= 60 and verdict["lost"] == 0 and verdict["duplicates"] == 0),
        "fill_seconds": round(fill_seconds, 1), "cores": os.cpu_count(),
    }
    print(" ".join(f"{k}: {v}" for k, v in out.items()))


if __name__ == "__main__":
    main()
