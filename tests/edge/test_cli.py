"""`shoal edge …` as a person runs it: real subprocesses on real homes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from shoal.edge.journal import FACT, OBSERVATION, Journal, NewEntry

from ..conftest import TEST_CONFIG
from ..server.conftest import make_site
from .conftest import NatsServer, Proc, backlog, env_for, hub_facts, hub_toml, journal_head, make_home, node_toml, wait_for


def shoal(home: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", "shoal", *args], env={**env_for(home), "COLUMNS": "160"},
                         capture_output=True, text=True, timeout=120)
    if ok:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_sensors_prints_this_hosts_readings_and_why_one_is_skipped(tmp_path: Path) -> None:
    home = make_home(tmp_path, "vm", "")  # no [edge]: the host's own default sensors
    out = shoal(home, "edge", "sensors").stdout
    assert "cpu" in out and "memory" in out and "%" in out
    assert "skipped" in out and "this host has none" in out  # no thermal zone on this VM
    rows = json.loads(shoal(home, "edge", "sensors", "--json").stdout)
    assert {r["name"] for r in rows if r["value"] is not None} >= {"cpu", "memory", "disk", "load"}


def add_notes(home: Path) -> None:
    async def go() -> None:
        j = await Journal.open(home / "edge.db", node="porch")
        now = j.wall_ms()
        await j.append([NewEntry(OBSERVATION, now, body={"text": "In the porch, motion was active twice, at an hour when it is usually quiet.",
                                                          "confidence": 0.9, "method": "template"}),
                        NewEntry(FACT, now + 1, body={"key": "routine:temp", "text": "Temperature in the porch is usually between 18.0 and 23.5 °C.",
                                                      "confidence": 0.7})])
        await j.close()

    asyncio.run(go())


def test_logs_status_plot_search_and_a_one_off_sync(tmp_path: Path, nats_server: NatsServer) -> None:
    node_home = make_home(tmp_path, "porch", node_toml("porch", nats_server.url))
    head = backlog(node_home, "porch", 30_000)
    add_notes(node_home)

    logs = shoal(node_home, "edge", "logs", "--tail", "5").stdout
    assert "observation" in logs and "motion was active twice" in logs and "confidence 0.90" in logs
    assert "fact" in logs and "18.0 and 23.5" in logs
    readings = shoal(node_home, "edge", "logs", "-n", "3", "--kind", "reading", "--json").stdout.splitlines()
    assert len(readings) == 3 and all(json.loads(line)["kind"] == "reading" for line in readings)
    bad = shoal(node_home, "edge", "logs", "--kind", "gossip", ok=False)
    assert bad.returncode == 2 and "unknown kind" in bad.stderr

    status = json.loads(shoal(node_home, "edge", "status", "--json").stdout)
    assert status["backlog"] == head + 2 and status["last_sync"] is None and status["running"] is False
    assert 15 < status["storage"]["bytes_per_entry"] < 60
    text = shoal(node_home, "edge", "status").stdout
    assert "never synced" in text and "waiting for the hub" in text

    png = tmp_path / "porch.png"
    out = shoal(node_home, "edge", "plot", "temp", "--hours", "2", "-o", str(png)).stdout
    assert "wrote" in out and png.read_bytes()[:4] == b"\x89PNG"
    assert "no sensor named nope" in shoal(node_home, "edge", "plot", "nope", ok=False).stderr
    hits = shoal(node_home, "edge", "search", "quiet motion at night").stdout
    assert "motion was active twice" in hits

    # a one-off sync (the node need not run) sends the backlog and waits for the hub to commit it
    hub_home = tmp_path / "hub"
    hub_home.mkdir()
    make_site(hub_home, TEST_CONFIG + hub_toml(nats_server.url))
    hub = Proc(hub_home, "edge", "hub")
    try:
        synced = shoal(node_home, "edge", "sync", "--timeout", "90")
        assert "the hub has every entry" in synced.stdout
        assert hub_facts(hub_home, "porch")["count"] == head + 2
        assert json.loads(shoal(node_home, "edge", "status", "--json").stdout)["backlog"] == 0
        nodes = json.loads(shoal(hub_home, "edge", "nodes", "--json").stdout)
        assert [(n["name"], n["contig"], n["backlog"]) for n in nodes] == [("porch", head + 2, 0)]
        assert "ana may now see porch" in shoal(hub_home, "edge", "grant", "porch", "ana").stdout
        assert "no user named" in shoal(hub_home, "edge", "grant", "porch", "zed", ok=False).stderr
    finally:
        hub.stop()
    wait_for(lambda: not hub.alive(), 10)


def test_shoal_edge_alone_runs_the_node_and_help_still_lists_the_commands(tmp_path: Path) -> None:
    home = make_home(tmp_path, "porch", node_toml("porch"))
    node = Proc(home, "edge")  # as the issue has it: `shoal edge` runs an edge node
    try:
        wait_for(lambda: journal_head(home) > 50, 60, what="the node recording")
        assert node.alive()
    finally:
        assert node.stop() == 0, node.output()[-2000:]
    assert "edge node porch" in node.output()
    status = json.loads(shoal(home, "edge", "status", "--json").stdout)
    assert status["running"] is False and status["head"] >= 50
    helped = shoal(home, "edge", "--help").stdout
    assert "run" in helped and "status" in helped and "sensors" in helped
