"""/api/nodes and the Nodes view: auth, per-node grants, plots, in a real uvicorn and a real browser."""

from __future__ import annotations

import asyncio
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from shoal.edge.hubstore import HubStore
from shoal.edge.journal import FACT, OBSERVATION, READING, Journal, NewEntry
from shoal.edge.wire import decode, encode
from shoal.store.db import Database

from ..conftest import ARTIFACTS, TEST_CONFIG
from ..server.conftest import PASSWORDS, LiveServer, Site, auth, make_site
from .conftest import Clock, hub_toml


async def _fill(home: Path, db_path: Path) -> None:
    """A garage node with a day of readings and some notes, synced into the hub's database."""
    now = time.time()
    clock = Clock(now - 86400)
    j = await Journal.open(home / "garage.db", node="garage", wall=clock)
    t = await j.declare_sensor("temp", "simulated", "°C", "temperature")
    m = await j.declare_sensor("motion", "simulated", "", "motion", binary=True)
    import math

    items = []
    for i in range(0, 86400 - 4 * 3600, 30):  # until four hours ago
        ms = int((now - 86400 + i) * 1000)
        items.append(NewEntry(READING, ms, t.id, round(20 + 4 * math.sin(i / 86400 * 2 * math.pi) + (6 if 3600 * 12 < i < 3600 * 13 else 0), 2)))
        items.append(NewEntry(READING, ms + 1, m.id, 1.0 if 7 * 3600 < i < 9 * 3600 and i % 300 == 0 else 0.0))
    await j.append(items)
    clock.t = now - 3 * 3600
    await j.append([NewEntry(OBSERVATION, j.wall_ms(), body={
        "text": "In the garage, temperature is 26.3 °C, much higher than usual for this time of day.", "sensor": "temp",
        "rule": "unusual_high", "confidence": 0.84, "method": "model", "cites": [[5000, 26.3]]})])
    clock.t = now - 2 * 3600
    await j.append([NewEntry(FACT, j.wall_ms(), body={
        "key": "routine:motion", "text": "Motion in the garage is usually active 07:00–09:00.", "confidence": 0.7,
        "basis": {"days": 6, "minutes": 8640, "hours": list(range(24))}})])
    db = await Database(db_path).open()
    hub = HubStore(db)
    await hub.hello({"node": "garage", "uid": j.uid, "head": j.head, "first": 1, "wall_ms": int(now * 1000), "location": "garage", "site": "home"})
    rows = await j.rows(1, j.head)
    await hub.ingest([decode(encode("garage", j.uid, a, min(a + 9999, j.head), [r for r in rows if a <= r[0] <= a + 9999]))
                      for a in range(1, j.head + 1, 10_000)])
    await db.close()
    await j.close()


@pytest.fixture(scope="module")
def nodes_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Site, LiveServer]]:
    home = tmp_path_factory.mktemp("nodes-hub")
    site = make_site(home, TEST_CONFIG + hub_toml("nats://127.0.0.1:1", grants='grants = { garage = ["ana"] }'))
    with ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: asyncio.run(_fill(home, site.env.settings.db_path))).result()
    server = LiveServer(site.env).start()
    yield site, server
    server.stop()


def test_nodes_are_listed_only_for_those_granted_and_someone_elses_node_is_a_404(nodes_site) -> None:  # type: ignore[no-untyped-def]
    site, live = nodes_site
    with httpx.Client(base_url=live.url, timeout=30) as http:
        assert http.get("/api/nodes").status_code == 401
        ana = http.get("/api/nodes", headers=auth(site.tokens["ana"])).json()
        assert [n["name"] for n in ana["nodes"]] == ["garage"] and ana["nodes"][0]["backlog"] == 0
        assert "url" not in ana["hub"]  # the hub's address is for admins
        assert http.get("/api/nodes", headers=auth(site.tokens["bob"])).json()["nodes"] == []
        for path in ("/api/nodes/garage", "/api/nodes/garage/notes", "/api/nodes/garage/series?sensor=1",
                     "/api/nodes/garage/plot.png?sensor=1"):
            r = http.get(path, headers=auth(site.tokens["bob"]))
            assert r.status_code == 404, path
        detail = http.get("/api/nodes/garage", headers=auth(site.tokens["ana"])).json()
        assert {s["name"]: s["unit"] for s in detail["sensors"]} == {"temp": "°C", "motion": ""}
        notes = http.get("/api/nodes/garage/notes", headers=auth(site.tokens["ana"])).json()
        assert [n["kind"] for n in notes] == ["fact", "observation"]
        assert notes[1]["cites"] == [[5000, 26.3]] and notes[1]["confidence"] == 0.84
        series = http.get("/api/nodes/garage/series", params={"sensor": 1, "hours": 24, "points": 48},
                          headers=auth(site.tokens["ana"])).json()
        assert 40 <= len(series["points"]) <= 50 and max(p["max"] for p in series["points"]) > 25
        png = http.get("/api/nodes/garage/plot.png", params={"sensor": 1}, headers=auth(site.tokens["ana"]))
        assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
        assert http.get("/api/nodes/garage/series?sensor=99", headers=auth(site.tokens["ana"])).status_code == 404


def test_only_admins_change_who_sees_a_node(nodes_site) -> None:  # type: ignore[no-untyped-def]
    site, live = nodes_site
    with httpx.Client(base_url=live.url, timeout=30) as http:
        r = http.put("/api/nodes/garage/grants/bob", headers=auth(site.tokens["ana"]))
        assert r.status_code == 403 and "admins" in r.json()["error"]["message"]
        assert http.put("/api/nodes/garage/grants/bob", headers=auth(site.tokens["root"])).status_code == 204
        assert [n["name"] for n in http.get("/api/nodes", headers=auth(site.tokens["bob"])).json()["nodes"]] == ["garage"]
        grants = http.get("/api/nodes/garage/grants", headers=auth(site.tokens["root"])).json()
        assert [g["user"] for g in grants["api"]] == ["bob"] and grants["config"] == {"garage": ["ana"]}
        assert http.delete("/api/nodes/garage/grants/bob", headers=auth(site.tokens["root"])).status_code == 204
        assert http.get("/api/nodes/garage", headers=auth(site.tokens["bob"])).status_code == 404
        assert http.put("/api/nodes/site:home/grants/bob", headers=auth(site.tokens["root"])).status_code == 204
        assert http.get("/api/nodes/garage", headers=auth(site.tokens["bob"])).status_code == 200  # through its site
        assert http.put("/api/nodes/garage/grants/nobody", headers=auth(site.tokens["root"])).status_code == 404


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def test_the_nodes_view_shows_status_plots_and_the_observation_stream(nodes_site) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect, sync_playwright

    site, live = nodes_site
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(live.url)
        page.fill("input[name=name]", "ana")
        page.fill("input[name=password]", PASSWORDS["ana"])
        page.click("button:has-text('Sign in')")
        page.click("[data-test=nav-nodes]")
        view = page.locator("[data-test=nodes-view]")
        expect(view.locator("tr[data-node=garage]")).to_contain_text("garage", timeout=30_000)
        detail = page.locator("[data-test=node-detail]")
        expect(detail.locator("[data-test=observation]").first).to_contain_text("much higher than usual", timeout=30_000)
        expect(detail.locator("[data-test=fact]").first).to_contain_text("07:00–09:00")
        expect(detail.locator(".sensor-card img").first).to_have_js_property("complete", True, timeout=30_000)
        page.wait_for_function("() => [...document.querySelectorAll('.sensor-card img')].every(i => i.naturalWidth > 0)", timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "ui-nodes.png"), full_page=True)
        browser.close()
        assert not errors, errors
