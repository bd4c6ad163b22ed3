"""Issue 16's check: two nodes with simulated sensors and `shoal up` as the hub, separate processes and
homes on loopback; after offline stretches and reconnects the hub holds exactly every entry of each node."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from ..conftest import TEST_CONFIG, free_port
from ..server.conftest import auth, make_site
from .conftest import (
    NatsServer, Proc, assert_exact_copy, hub_facts, hub_has_everything, hub_toml, journal_facts, make_home, node_toml, wait_for,
)


def test_two_nodes_offline_then_online_then_cut_reach_the_hub_exactly(tmp_path: Path, nats_server: NatsServer) -> None:
    port = free_port()
    hub_home = tmp_path / "hub"
    hub_home.mkdir()
    site = make_site(hub_home, TEST_CONFIG + hub_toml(nats_server.url, grants='grants = { porch = ["ana"] }'))
    names = ("porch", "attic")
    homes = {n: make_home(tmp_path, n, node_toml(n, nats_server.url, location=f"{n}")) for n in names}
    nats_server.stop()  # the stretch offline: nodes record, nothing reaches the hub
    nodes = {n: Proc(homes[n], "edge", "run", "-q") for n in names}
    hub = Proc(hub_home, "up", "--port", str(port))
    try:
        wait_for(lambda: all(journal_facts(h)["head"] > 300 for h in homes.values()), 60, what="both nodes recording offline")
        nats_server.start()
        for n in names:
            wait_for(lambda n=n: hub_facts(hub_home, n)["count"] > 300, 90, what=f"{n} syncing after the offline stretch")
        nats_server.stop(hard=True)  # a second cut, while both sync live
        time.sleep(2.0)
        nats_server.start()
        for n in names:
            head = journal_facts(homes[n])["head"]
            wait_for(lambda n=n, head=head: hub_facts(hub_home, n)["count"] >= head, 60, what=f"{n} after the cut")
        for n in names:
            assert nodes[n].stop() == 0, nodes[n].output()[-2000:]
        for n in names:
            wait_for(lambda n=n: hub_has_everything(hub_home, homes[n], n), 60, what=f"{n}'s last entries")
            assert_exact_copy(hub_home, homes[n], n)

        # the hub's Nodes API: each person sees only the nodes granted to them
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            wait_for(lambda: http.get("/healthz").status_code == 200, 60, what="the hub's web server")
            root = http.get("/api/nodes", headers=auth(site.tokens["root"])).json()
            assert {n["name"] for n in root["nodes"]} == set(names) and root["hub"]["state"] == "running"
            assert all(n["backlog"] == 0 for n in root["nodes"])
            ana = http.get("/api/nodes", headers=auth(site.tokens["ana"])).json()
            assert [n["name"] for n in ana["nodes"]] == ["porch"]
            assert http.get("/api/nodes", headers=auth(site.tokens["bob"])).json()["nodes"] == []
            assert http.get("/api/nodes/attic", headers=auth(site.tokens["ana"])).status_code == 404
            assert http.get("/api/nodes/porch", headers=auth(site.tokens["bob"])).status_code == 404
            porch = http.get("/api/nodes/porch", headers=auth(site.tokens["ana"])).json()
            assert {s["name"] for s in porch["sensors"]} == {"temp", "motion"}
    finally:
        for p in nodes.values():
            p.stop()
        hub.stop()
