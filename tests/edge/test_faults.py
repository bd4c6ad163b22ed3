"""Faults (issue 16, item 8) on issue 16's setup: two nodes and one hub, each a real process with its own home,
on a real nats-server on a free loopback port. Through each fault the hub ends up holding exactly every entry of
each node, counted by (node, seq), none twice (``Site.finish``), and the user is told what is going on.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from shoal.edge.journal import CLOCK, READING

from .conftest import NODES, DeviceClock, NatsServer, Site, backlog, edge_status, journal_facts, wait_for

BACKLOG = 100_000  # entries each node has before the hub sees it: a sync that takes a while


@pytest.fixture
def site(tmp_path: Path, nats_server: NatsServer) -> Iterator[Site]:
    s = Site(tmp_path, nats_server)
    yield s
    s.close()


def with_backlogs(site: Site) -> dict[str, int]:
    """Each node was offline for a while: its journal holds a backlog the hub does not have."""
    return {n: backlog(site.homes[n], n, BACKLOG) for n in site.names}


def test_a_network_cut_mid_sync_loses_nothing_and_duplicates_nothing(site: Site, nats_server: NatsServer) -> None:
    heads = with_backlogs(site)
    site.start_hub()
    site.start()
    # mid-sync: the hub has some of each backlog, not all of it
    wait_for(lambda: site.mid_sync(heads), 60, interval=0.02, what="sync under way")
    nats_server.stop(hard=True)  # the network goes: nothing answers on the hub's port
    for n in NODES:
        # `shoal edge status` says what is going on (its live part is at most a few seconds old)
        status = wait_for(lambda n=n: (s := edge_status(site.homes[n]))["running"] and s["sync"]["state"] == "offline"
                          and s["sync"]["last_error"] and s, 30, interval=0.5, what=f"{n} reporting the cut")
        assert "cannot reach the hub" in status["sync"]["last_error"] or "interrupted" in status["sync"]["last_error"]
        assert "syncs by itself" in status["sync"]["hint"]
        assert status["backlog"] > 0
    before = {n: site.head(n) for n in NODES}
    wait_for(lambda: all(site.head(n) > before[n] for n in NODES), 30, what="both nodes recording while offline")
    nats_server.start()  # the network is back (same server, same store)
    site.wait_caught_up(heads, "the backlog after the cut")
    site.finish()


@pytest.mark.parametrize("how", ["kill -9", "restart"])
def test_a_hub_killed_or_restarted_mid_sync_resumes_from_what_it_committed(site: Site, how: str) -> None:
    heads = with_backlogs(site)
    site.start_hub()
    site.start()
    wait_for(lambda: site.mid_sync(heads), 60, interval=0.02, what="sync under way")
    assert site.hub is not None
    if how == "kill -9":
        site.hub.kill9()  # mid-transaction or between commit and ack: either way the stream redelivers
    else:
        assert site.hub.stop() == 0, site.hub.output()[-3000:]  # a clean restart: what it took it committed
    assert sum(site.held(n) for n in NODES) < sum(heads.values())
    wait_for(lambda: all(edge_status(site.homes[n])["backlog"] > 0 for n in NODES), 10, interval=0.5,
             what="the nodes holding their backlog")  # each waits (bounded) and keeps everything
    site.start_hub()
    site.wait_caught_up(heads, f"the backlog after the hub's {how}")
    site.finish()


def test_kill_9_of_each_edge_mid_write_leaves_contiguous_journals_and_exact_copies(site: Site) -> None:
    site.start_hub()
    site.start()
    rnd = random.Random(16)
    for _ in range(3):
        for n in NODES:
            # while it writes: readings commit every 100 ms and batches go out
            head = site.head(n)
            wait_for(lambda n=n, head=head: site.head(n) > head + 200, 60, what=f"{n} writing")
            time.sleep(rnd.uniform(0.2, 1.0))
            site.nodes[n].kill9()
            j = journal_facts(site.homes[n])
            assert j["count"] == j["head"] == j["max"], f"a killed write left a gap or a stray row in {n}"
            site.start(n)
    heads = {n: site.head(n) + 100 for n in NODES}
    wait_for(lambda: all(site.head(n) > heads[n] for n in NODES), 60, what="the nodes writing again")
    site.finish()


def test_device_clocks_jumping_back_keep_every_entry_ordered_and_both_times(site: Site, tmp_path: Path) -> None:
    porch, attic = NODES
    clocks = {n: DeviceClock(tmp_path / f"{n}.faketime") for n in NODES}
    site.node_env = {n: c.env for n, c in clocks.items()}
    heads = with_backlogs(site)
    site.start_hub()
    site.start()
    wait_for(lambda: site.mid_sync(heads), 60, interval=0.02, what="sync under way")
    # the porch's clock goes back an hour while it writes and syncs (a bad NTP answer)
    clocks[porch].set(-3600)
    # the attic reboots without a real-time clock: it comes up a day in the past
    assert site.nodes[attic].stop() == 0, site.nodes[attic].output()[-3000:]
    clocks[attic].set(-86400)
    site.start(attic)
    jumped = {porch: 3600, attic: 86400}
    for n in NODES:
        wait_for(lambda n=n: any(r[2] == CLOCK for r in journal_facts(site.homes[n])["rows"][heads[n]:]), 60,
                 interval=0.5, what=f"{n} noting its clock jump")
    moved = {n: site.head(n) + 100 for n in NODES}
    wait_for(lambda: all(site.head(n) > moved[n] for n in NODES), 60, what="the nodes writing on their jumped clocks")
    site.wait_caught_up(moved, "the entries written after the jump")
    site.finish()
    for n in NODES:
        rows = journal_facts(site.homes[n])["rows"]
        hlcs = [r[1] for r in rows]
        assert all(a < b for a, b in zip(hlcs, hlcs[1:])), f"{n}: the journal's clock went backwards"
        # the hub keeps the device's own time beside the HLC for what was written on the wrong clock
        walls = hub_walls(site.hub_home, n)
        assert walls, f"{n}: no entry kept its device time"
        assert all((hlc >> 16) - wall >= jumped[n] * 1000 - 600_000 for hlc, wall in walls), n


def hub_walls(hub_home: Path, node: str) -> list[tuple[int, int]]:
    """(hlc, device time) of the readings the hub holds with a device time of their own."""
    c = sqlite3.connect(f"file:{hub_home / 'shoal.db'}?mode=ro", uri=True)
    try:
        return c.execute("SELECT e.hlc, e.wall FROM edge_entries e JOIN edge_nodes n ON n.id = e.node "
                         "WHERE n.name = ? AND e.wall IS NOT NULL AND e.kind = ?", (node, READING)).fetchall()
    finally:
        c.close()


@pytest.fixture
def small_disks(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """A 1 MiB tmpfs per node: real full disks (root may mount; otherwise the test says why it cannot run)."""
    if os.geteuid() != 0:
        pytest.skip("a full disk needs a tmpfs mount, which needs root")
    mounts: dict[str, Path] = {}
    try:
        for n in NODES:
            mount = tmp_path / f"small-disk-{n}"
            mount.mkdir()
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True)
            if r.returncode != 0:
                pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
            mounts[n] = mount
        yield mounts
    finally:
        for mount in mounts.values():
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_full_disks_keep_readings_waiting_say_so_and_lose_nothing(tmp_path: Path, nats_server: NatsServer,
                                                                   small_disks: dict[str, Path]) -> None:
    site = Site(tmp_path, nats_server, homes={n: d / "node" for n, d in small_disks.items()}, extra="min_free_mb = 0\n")
    try:
        # nothing to sync to at first: each disk fills with entries the hub does not have
        nats_server.stop()
        fillers = {n: d / "filler" for n, d in small_disks.items()}
        for n, filler in fillers.items():
            filler.write_bytes(b"\0" * max(0, shutil.disk_usage(small_disks[n]).free - 250_000))
        site.start()
        for n in NODES:
            status = wait_for(lambda n=n: (s := edge_status(site.homes[n], check=False)) and s["disk_full"] and s, 90,
                              interval=0.5, what=f"{n}'s disk filling")
            assert "disk" in status["disk_full"] and "nothing stored is lost" in status["disk_full"], status
            assert status["pending"] > 0  # readings wait in memory
            j = journal_facts(site.homes[n])
            assert j["count"] == j["head"] == j["max"]
        for filler in fillers.values():
            filler.unlink()  # the user frees space, as the message says
        for n in NODES:
            wait_for(lambda n=n: not edge_status(site.homes[n])["disk_full"], 60, interval=0.5, what=f"{n} writing again")
            assert edge_status(site.homes[n])["dropped"] == 0
        # and they stay writing: the WAL must not take back the room that was freed (Journal.checkpoint)
        heads = {n: site.head(n) + 1000 for n in NODES}
        wait_for(lambda: all(site.head(n) > heads[n] for n in NODES), 60, what="the nodes writing on")
        for n in NODES:
            assert not edge_status(site.homes[n])["disk_full"], n
        nats_server.start()  # the hub is back (a node retries it with a backoff of up to 30 s)
        site.start_hub()
        site.wait_caught_up({n: site.head(n) for n in NODES}, "the backlog reaching the hub")
        site.finish()
    finally:
        site.close()
