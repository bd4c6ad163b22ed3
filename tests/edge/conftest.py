"""Edge fixtures: a real nats-server with JetStream and a real Mosquitto on free loopback ports,
homes for nodes and hubs, and `shoal edge` / `shoal up` as real subprocesses."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from .._servers import NatsServer, wait_port
from ..conftest import ROOT, free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.1, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not met within {timeout} s")


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats-store").start()
    yield server
    server.stop()


class Mosquitto:
    def __init__(self, base: Path) -> None:
        if not Path(MOSQUITTO).exists():
            pytest.skip("mosquitto is not installed (make test installs Debian's mosquitto)")
        self.port = free_port()
        base.mkdir(parents=True, exist_ok=True)
        self.conf = base / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {base}/\nlog_dest none\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "Mosquitto":
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
        self.proc = None


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "mosquitto").start()
    yield broker
    broker.stop()


def node_toml(name: str, nats: str = "", *, sensors: str | None = None, extra: str = "", location: str = "") -> str:
    """shoal.toml of a test node: fast simulated sensors, templates (no model), no dashboard."""
    sensors = sensors if sensors is not None else f"""
[[edge.sensors]]
name = "temp"
kind = "simulated"
pattern = "daily"
interval = 0.01
unit = "°C"

[[edge.sensors]]
name = "motion"
kind = "simulated"
pattern = "motion"
interval = 0.02
binary = true
seed = {abs(hash(name)) % 1000}
"""
    return f"""
[edge]
node = "{name}"
location = "{location or name}"
nats = "{nats}"
batch = 500
window = 4
sync_interval = 0.3
flush_interval = 0.1
observe_interval = 3600
observe_server = "none"
embed = false
max_unacked = 5000
{extra}
[edge.dashboard]
port = 0
{sensors}
"""


def hub_toml(nats: str, *, grants: str = "", extra: str = "") -> str:
    return f"""
[edge.hub]
enabled = true
nats = "{nats}"
fetch = 8
pull_after = 2
{grants}
{extra}
"""


def env_for(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_") or k == "SHOAL_LOG_LEVEL"}
    env.update(SHOAL_HOME=str(home), PYTHONPATH=str(ROOT / "src"), HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


class Proc:
    """A shoal command as a real subprocess, its output kept in a file for failures."""

    def __init__(self, home: Path, *args: str, env: dict[str, str] | None = None, logs: Path | None = None) -> None:
        self.home = home
        self.args = args
        self.path = Path(tempfile.mkstemp(prefix=f"shoal-{args[0]}-", suffix=".log", dir=logs or home.parent)[1])
        with open(self.path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "shoal", *args], env={**env_for(home), **(env or {})},
                                         stdout=log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=15)

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return int(self.proc.returncode)


def make_home(base: Path, name: str, toml: str) -> Path:
    home = base / name
    home.mkdir(parents=True, exist_ok=True)
    (home / "shoal.toml").write_text(toml)
    return home


def journal_facts(home: Path) -> dict[str, Any]:
    """What a node's journal holds: head, count, min/max seq, and every entry."""
    empty = {"head": 0, "count": 0, "min": None, "max": None, "rows": [], "uid": None}
    if not (home / "edge.db").exists():
        return empty
    c = sqlite3.connect(f"file:{home / 'edge.db'}?mode=ro", uri=True, timeout=30)
    try:
        if c.execute("SELECT count(*) FROM sqlite_master WHERE name = 'state'").fetchone()[0] == 0:
            return empty
        if c.execute("SELECT count(*) FROM state WHERE key = 'head'").fetchone()[0] == 0:
            return empty
        head = int(c.execute("SELECT value FROM state WHERE key = 'head'").fetchone()[0])
        n, lo, hi = c.execute("SELECT count(*), min(seq), max(seq) FROM journal").fetchone()
        rows = c.execute("SELECT seq, hlc, kind, sensor, value FROM journal ORDER BY seq").fetchall()
        return {"head": head, "count": n, "min": lo, "max": hi, "rows": rows,
                "uid": c.execute("SELECT value FROM state WHERE key = 'uid'").fetchone()[0]}
    finally:
        c.close()


def hub_facts(home: Path, node: str) -> dict[str, Any]:
    """What the hub holds for a node, counted by (node, seq)."""
    nothing = {"count": 0, "distinct": 0, "contig": 0, "rows": [], "duplicates": 0, "conflicts": 0}
    if not (home / "shoal.db").exists():
        return nothing
    c = sqlite3.connect(f"file:{home / 'shoal.db'}?mode=ro", uri=True, timeout=30)
    try:
        row = c.execute("SELECT id, contig, duplicates, conflicts FROM edge_nodes WHERE name = ?", (node,)).fetchone()
        if row is None:
            return nothing
        nid = row[0]
        n, distinct = c.execute("SELECT count(*), count(DISTINCT seq) FROM edge_entries WHERE node = ?", (nid,)).fetchone()
        rows = c.execute("SELECT seq, hlc, kind, sensor, value FROM edge_entries WHERE node = ? ORDER BY seq", (nid,)).fetchall()
        return {"count": n, "distinct": distinct, "contig": row[1], "duplicates": row[2], "conflicts": row[3], "rows": rows}
    except sqlite3.OperationalError:  # the hub has not created its tables yet
        return nothing
    finally:
        c.close()


def journal_head(home: Path) -> int:
    """A node's head, cheaply (for waits)."""
    try:
        c = sqlite3.connect(f"file:{home / 'edge.db'}?mode=ro", uri=True, timeout=30)
    except sqlite3.OperationalError:  # no journal yet
        return 0
    try:
        row = c.execute("SELECT value FROM state WHERE key = 'head'").fetchone()
        return int(row[0]) if row else 0
    except sqlite3.OperationalError:
        return 0
    finally:
        c.close()


def hub_held(home: Path, node: str) -> tuple[int, int]:
    """(entries held, contig) of a node at the hub, cheaply (for waits)."""
    if not (home / "shoal.db").exists():
        return 0, 0
    c = sqlite3.connect(f"file:{home / 'shoal.db'}?mode=ro", uri=True, timeout=30)
    try:
        row = c.execute("SELECT id, contig FROM edge_nodes WHERE name = ?", (node,)).fetchone()
        if row is None:
            return 0, 0
        return int(c.execute("SELECT count(*) FROM edge_entries WHERE node = ?", (row[0],)).fetchone()[0]), int(row[1])
    except sqlite3.OperationalError:
        return 0, 0
    finally:
        c.close()


def hub_has_everything(hub_home: Path, node_home: Path, node: str) -> bool:
    head = journal_head(node_home)
    return hub_held(hub_home, node) == (head, head)


def assert_exact_copy(hub_home: Path, node_home: Path, node: str) -> None:
    """Every entry of the node at the hub, once, identical; and the node's journal has no gap."""
    j = journal_facts(node_home)
    h = hub_facts(hub_home, node)
    assert j["count"] == j["head"] == j["max"] and j["min"] == 1, "the node's journal has a gap"
    assert h["count"] == h["distinct"] == j["head"], (h["count"], h["distinct"], j["head"])
    assert h["rows"] == j["rows"], "the hub's copy differs from the node's journal"
    assert h["conflicts"] == 0


NODES = ("porch", "attic")


class Site:
    """One hub (`shoal edge hub`) and several nodes (`shoal edge run`), real processes with their own homes
    on one nats-server: the setup of issue 16's check. ``homes`` puts a node's home elsewhere (a small disk);
    ``hub_home`` and ``hub_args`` run another hub (`shoal up` on a site the caller made)."""

    def __init__(self, base: Path, nats: NatsServer, names: tuple[str, ...] = NODES, *, extra: str = "",
                 homes: dict[str, Path] | None = None, hub_home: Path | None = None,
                 hub_args: tuple[str, ...] = ("edge", "hub")) -> None:
        self.base = base  # the processes' output goes here (not onto a node's small disk)
        self.hub_home = hub_home or make_home(base, "hub", hub_toml(nats.url))
        self.hub_args = hub_args
        self.homes: dict[str, Path] = {}
        for n in names:
            home = (homes or {}).get(n, base / n)
            self.homes[n] = make_home(home.parent, home.name, node_toml(n, nats.url, extra=extra))
        self.names = names
        self.nodes: dict[str, Proc] = {}
        self.hub: Proc | None = None
        self.node_env: dict[str, dict[str, str]] = {}

    def start_hub(self) -> None:
        self.hub = Proc(self.hub_home, *self.hub_args, logs=self.base)

    def start(self, *names: str) -> None:
        """Start these nodes (all of them by default)."""
        for n in names or self.names:
            self.nodes[n] = Proc(self.homes[n], "edge", "run", "-q", env=self.node_env.get(n), logs=self.base)

    def head(self, name: str) -> int:
        return journal_head(self.homes[name])

    def held(self, name: str) -> int:
        return hub_held(self.hub_home, name)[0]

    def mid_sync(self, heads: dict[str, int]) -> bool:
        """The hub has part of every node's backlog and not all of it yet."""
        held = {n: self.held(n) for n in heads}
        return all(held.values()) and any(held[n] < heads[n] for n in heads)

    def wait_caught_up(self, heads: dict[str, int], what: str, timeout: float = 120) -> None:
        for n, head in heads.items():
            wait_for(lambda n=n, head=head: self.held(n) >= head, timeout, what=f"{n}: {what}")  # type: ignore[misc]

    def finish(self, *, stop_hub: bool = True) -> None:
        """Stop every node (its last entries go out), then the hub: the hub must hold an exact copy of each."""
        for n, p in self.nodes.items():
            assert p.stop() == 0, p.output()[-3000:]
        for n in self.names:
            wait_for(lambda n=n: hub_has_everything(self.hub_home, self.homes[n], n), 60,  # type: ignore[misc]
                     what=f"the hub holding every entry of {n}")
        if stop_hub:
            assert self.hub is not None
            self.hub.stop()
        for n in self.names:
            assert_exact_copy(self.hub_home, self.homes[n], n)

    def close(self) -> None:
        for p in self.nodes.values():
            p.stop()
        if self.hub is not None:
            self.hub.stop()


#: Debian's libfaketime, wherever the architecture puts it
LIBFAKETIME = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))), "/usr/lib/faketime/libfaketime.so.1")


class DeviceClock:
    """A node process's own wall clock, moved from outside with libfaketime (Debian's libfaketime):
    the process reads a shifted CLOCK_REALTIME; its monotonic clock stays true."""

    def __init__(self, path: Path) -> None:
        if not Path(LIBFAKETIME).exists():
            pytest.skip("libfaketime is not installed (make test installs Debian's libfaketime)")
        self.path = path
        self.set(0)

    def set(self, seconds: float) -> None:
        """Shift the device's clock by ``seconds`` from true time (negative: into the past)."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{seconds:+.0f}\n")
        tmp.replace(self.path)

    @property
    def env(self) -> dict[str, str]:
        return {"LD_PRELOAD": LIBFAKETIME, "FAKETIME_TIMESTAMP_FILE": str(self.path), "FAKETIME_CACHE_DURATION": "1",
                # asyncio's timers run on the monotonic clock: a device clock jump must not stall them
                "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


class Clock:
    """A device clock for tests: set ``t`` to pin it (a backlog written in the past, a jump back);
    ``t = None`` follows the real clock, shifted by ``shift`` seconds."""

    def __init__(self, t: float | None = None, shift: float = 0.0) -> None:
        self.t = t
        self.shift = shift

    def __call__(self) -> float:
        return self.t if self.t is not None else time.time() + self.shift


def backlog(home: Path, node: str, n: int, *, step_ms: int = 100) -> int:
    """Give a node's journal ``n`` readings of "temp" written in the past (a node that was offline); returns its head."""
    import asyncio

    from shoal.edge.journal import READING, Journal, NewEntry

    async def go() -> int:
        clock = Clock(time.time() - n * step_ms / 1000 - 5)
        j = await Journal.open(home / "edge.db", node=node, wall=clock)
        s = await j.declare_sensor("temp", "simulated", "°C")
        t0 = j.wall_ms() + 1
        for i in range(0, n, 20_000):
            await j.append([NewEntry(READING, t0 + k * step_ms, s.id, round(20 + (k % 97) / 10, 1))
                            for k in range(i, min(n, i + 20_000))])
        head = j.head
        await j.close()
        return head

    return asyncio.run(go())


def edge_status(home: Path, *, check: bool = True) -> dict[str, Any]:
    """``shoal edge status --json`` of a node, as a person would run it ({} if it fails and not ``check``)."""
    import json

    out = subprocess.run([sys.executable, "-m", "shoal", "edge", "status", "--json"], env=env_for(home),
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0 and not check:
        return {}
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]
