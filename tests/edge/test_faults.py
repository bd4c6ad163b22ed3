"""Faults (issue 16, item 8), each with real processes: no entry lost, none duplicated, a clear message.

Nodes and the hub run as `shoal edge run` / `shoal edge hub` subprocesses with their own homes,
talking through a real nats-server on a free loopback port.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import (
    NatsServer, Proc, assert_exact_copy, backlog, edge_status, hub_facts, hub_has_everything, hub_toml, journal_facts,
    make_home, node_toml, wait_for,
)


def start(tmp_path: Path, nats: NatsServer, name: str, *, extra: str = "", home: Path | None = None) -> tuple[Path, Path]:
    hub_home = make_home(tmp_path, "hub", hub_toml(nats.url))
    node_home = home or make_home(tmp_path, name, node_toml(name, nats.url, extra=extra))
    if home is not None:
        (home / "shoal.toml").write_text(node_toml(name, nats.url, extra=extra))
    return hub_home, node_home


def finish(node: Proc, hub: Proc, hub_home: Path, node_home: Path, name: str) -> None:
    """Stop the node (its last entries go out), then the hub; the hub must hold an exact copy."""
    assert node.stop() == 0, node.output()[-3000:]
    wait_for(lambda: hub_has_everything(hub_home, node_home, name), 60, what="the hub holding every entry")
    hub.stop()
    assert_exact_copy(hub_home, node_home, name)


def test_a_network_cut_mid_sync_loses_nothing_and_duplicates_nothing(tmp_path: Path, nats_server: NatsServer) -> None:
    hub_home, node_home = start(tmp_path, nats_server, "porch")
    head = backlog(node_home, "porch", 150_000)
    hub = Proc(hub_home, "edge", "hub")
    node = Proc(node_home, "edge", "run", "-q")
    try:
        # mid-sync: the hub has some of the backlog, not all of it
        wait_for(lambda: 0 < hub_facts(hub_home, "porch")["count"] < head, 60, interval=0.02, what="sync under way")
        nats_server.stop(hard=True)  # the network goes: nothing answers on the hub's port
        # `shoal edge status` says what is going on (its live part is at most a few seconds old)
        status = wait_for(lambda: (s := edge_status(node_home))["running"] and s["sync"]["state"] == "offline"
                          and s["sync"]["last_error"] and s, 30, interval=0.5, what="the node reporting the cut")
        assert "cannot reach the hub" in status["sync"]["last_error"] or "interrupted" in status["sync"]["last_error"]
        assert "syncs by itself" in status["sync"]["hint"]
        assert status["backlog"] > 0
        before = journal_facts(node_home)["head"]
        time.sleep(1.0)
        assert journal_facts(node_home)["head"] > before  # it keeps recording while offline
        nats_server.start()  # the network is back (same server, same store)
        wait_for(lambda: hub_facts(hub_home, "porch")["count"] >= head, 90, what="the backlog after the cut")
        finish(node, hub, hub_home, node_home, "porch")
    finally:
        node.stop()
        hub.stop()


def test_a_hub_killed_mid_sync_resumes_from_what_it_committed(tmp_path: Path, nats_server: NatsServer) -> None:
    hub_home, node_home = start(tmp_path, nats_server, "attic")
    head = backlog(node_home, "attic", 150_000)
    hub = Proc(hub_home, "edge", "hub")
    node = Proc(node_home, "edge", "run", "-q")
    try:
        wait_for(lambda: 0 < hub_facts(hub_home, "attic")["count"] < head, 60, interval=0.02, what="sync under way")
        hub.kill9()  # mid-transaction or between commit and ack: either way the stream redelivers
        held = hub_facts(hub_home, "attic")["count"]
        assert held < head
        time.sleep(1.0)
        assert edge_status(node_home)["backlog"] > 0  # the node waits (bounded) and keeps everything
        hub = Proc(hub_home, "edge", "hub")
        wait_for(lambda: hub_facts(hub_home, "attic")["count"] >= head, 90, what="the backlog after the hub restart")
        finish(node, hub, hub_home, node_home, "attic")
    finally:
        node.stop()
        hub.stop()


def test_kill_9_of_the_edge_mid_write_leaves_a_contiguous_journal_and_an_exact_copy(tmp_path: Path, nats_server: NatsServer) -> None:
    hub_home, node_home = start(tmp_path, nats_server, "cellar")
    hub = Proc(hub_home, "edge", "hub")
    rnd = random.Random(16)
    node = Proc(node_home, "edge", "run", "-q")
    try:
        for _ in range(3):
            # while it writes: readings commit every 100 ms and batches go out
            wait_for(lambda: journal_facts(node_home)["head"] > 200, 60, what="the node writing")
            time.sleep(rnd.uniform(0.5, 1.5))
            node.kill9()
            j = journal_facts(node_home)
            assert j["count"] == j["head"] == j["max"], "a killed write left a gap or a stray row"
            node = Proc(node_home, "edge", "run", "-q")
        wait_for(lambda: journal_facts(node_home)["head"] > j["head"] + 100, 60, what="the node writing again")
        finish(node, hub, hub_home, node_home, "cellar")
    finally:
        node.stop()
        hub.stop()


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A 1 MiB tmpfs: a real full disk (root may mount; otherwise the test says why it cannot run)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a full disk needs a tmpfs mount, which needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_keeps_readings_waiting_says_so_and_loses_nothing(tmp_path: Path, nats_server: NatsServer, small_disk: Path) -> None:
    home = small_disk / "node"
    home.mkdir()
    hub_home, node_home = start(tmp_path, nats_server, "vault", home=home, extra="min_free_mb = 0\n")
    # nothing to sync to at first: the disk fills with entries the hub does not have
    nats_server.stop()
    filler = small_disk / "filler"
    free = shutil.disk_usage(small_disk).free
    filler.write_bytes(b"\0" * max(0, free - 400_000))
    node = Proc(node_home, "edge", "run", "-q")
    hub = None
    try:
        status = wait_for(lambda: (s := edge_status(node_home, check=False)) and s["disk_full"] and s, 90, interval=0.5,
                          what="the disk filling")
        assert "disk" in status["disk_full"] and "nothing stored is lost" in status["disk_full"], status
        assert status["pending"] > 0  # readings wait in memory
        j = journal_facts(node_home)
        assert j["count"] == j["head"] == j["max"]
        filler.unlink()  # the user frees space, as the message says
        wait_for(lambda: not edge_status(node_home)["disk_full"], 60, interval=0.5, what="the node writing again")
        assert edge_status(node_home)["dropped"] == 0
        nats_server.start()
        hub = Proc(hub_home, "edge", "hub")
        # (the node retries its hub with a backoff of up to 30 s after a long time offline)
        wait_for(lambda: hub_facts(hub_home, "vault")["count"] >= j["head"], 90, what="the backlog reaching the hub")
        finish(node, hub, hub_home, node_home, "vault")
    finally:
        node.stop()
        if hub is not None:
            hub.stop()
