"""Issue 16's check: two nodes with simulated sensors and `shoal up` as the hub, separate processes and
homes on loopback; after offline stretches and reconnects the hub holds exactly every entry of each node.
(test_faults.py runs the same setup, with `shoal edge hub`, through each fault of item 8.)"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from ..conftest import TEST_CONFIG, free_port
from ..server.conftest import auth, make_site
from .conftest import NODES, NatsServer, Site, hub_toml, wait_for


def test_two_nodes_offline_then_online_then_cut_reach_the_hub_exactly(tmp_path: Path, nats_server: NatsServer) -> None:
    port = free_port()
    hub_home = tmp_path / "hub"
    hub_home.mkdir()
    web = make_site(hub_home, TEST_CONFIG + hub_toml(nats_server.url, grants='grants = { porch = ["ana"] }'))
    site = Site(tmp_path, nats_server, hub_home=hub_home, hub_args=("up", "--port", str(port)))
    nats_server.stop()  # the stretch offline: nodes record, nothing reaches the hub
    site.start()
    site.start_hub()
    try:
        wait_for(lambda: all(site.head(n) > 300 for n in NODES), 60, what="both nodes recording offline")
        nats_server.start()
        site.wait_caught_up({n: 300 for n in NODES}, "syncing after the offline stretch", timeout=90)
        nats_server.stop(hard=True)  # a second cut, while both sync live
        time.sleep(2.0)
        nats_server.start()
        site.wait_caught_up({n: site.head(n) for n in NODES}, "after the cut", timeout=60)
        site.finish(stop_hub=False)

        # the hub's Nodes API: each person sees only the nodes granted to them
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            wait_for(lambda: http.get("/healthz").status_code == 200, 60, what="the hub's web server")
            root = http.get("/api/nodes", headers=auth(web.tokens["root"])).json()
            assert {n["name"] for n in root["nodes"]} == set(NODES) and root["hub"]["state"] == "running"
            assert all(n["backlog"] == 0 for n in root["nodes"])
            ana = http.get("/api/nodes", headers=auth(web.tokens["ana"])).json()
            assert [n["name"] for n in ana["nodes"]] == ["porch"]
            assert http.get("/api/nodes", headers=auth(web.tokens["bob"])).json()["nodes"] == []
            assert http.get("/api/nodes/attic", headers=auth(web.tokens["ana"])).status_code == 404
            assert http.get("/api/nodes/porch", headers=auth(web.tokens["bob"])).status_code == 404
            porch = http.get("/api/nodes/porch", headers=auth(web.tokens["ana"])).json()
            assert {s["name"] for s in porch["sensors"]} == {"temp", "motion"}
    finally:
        site.close()
