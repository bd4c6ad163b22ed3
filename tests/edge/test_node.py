"""A whole node in process: real sensors, journal, sync to a real hub, its own dashboard."""

from __future__ import annotations

from pathlib import Path

import httpx

from shoal.config import Env, Settings, parse_config
from shoal.edge.hlc import physical
from shoal.edge.journal import CLOCK
from shoal.edge.node import EdgeNode

from ..conftest import free_port
from .conftest import Clock, NatsServer, assert_exact_copy, hub_facts, node_toml
from .test_sync import start_hub, until


def node_env(home: Path, text: str) -> Env:
    home.mkdir(parents=True, exist_ok=True)
    (home / "shoal.toml").write_text(text)
    return Env(Settings(home=home), parse_config(text))


async def test_a_clock_that_jumps_back_keeps_the_journal_ordered_and_keeps_both_times(tmp_path: Path, nats_server: NatsServer) -> None:
    clock = Clock()
    node = await EdgeNode(node_env(tmp_path / "den", node_toml("den", nats_server.url)), wall=clock).start()
    db, hub = await start_hub(tmp_path / "hub", nats_server.url)
    try:
        j = node.journal
        assert j is not None
        await until(lambda: j.head > 100, 30)
        before = j.head
        clock.shift = -3600.0  # the device clock goes back an hour (no RTC, a bad NTP answer...)
        await until(lambda: j.head > before + 200, 30)
        entries = await j.entries(1, j.head)
        hlcs = [e.hlc for e in entries]
        assert hlcs == sorted(hlcs) and len(set(hlcs)) == len(hlcs)  # strictly increasing, whatever the clock did
        jumps = [e for e in entries if e.kind == CLOCK and (e.body or {}).get("jump_ms")]
        assert len(jumps) == 1 and -3_700_000 < jumps[0].body["jump_ms"] < -3_500_000  # type: ignore[index]
        after = [e for e in entries if e.seq > jumps[0].seq]
        # the device's own (wrong) time is kept beside the HLC while they disagree
        assert after and all(e.wall is not None and physical(e.hlc) - e.wall > 3_500_000 for e in after)
        await until(lambda: hub_facts(tmp_path / "hub", "den")["count"] >= before + 200, 30)
        notes = await hub.store.notes(["den"], kinds=("clock",))
        assert any("went back" in n["text"] for n in notes)
    finally:
        await node.stop()
        await until(lambda: hub_facts(tmp_path / "hub", "den")["count"] >= node.journal.head, 30)  # type: ignore[union-attr]
        await hub.stop()
        await db.close()
    assert_exact_copy(tmp_path / "hub", tmp_path / "den", "den")


async def test_the_node_serves_its_own_page_offline_with_readings_plots_and_notes(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    text = node_toml("shed").replace("[edge.dashboard]\nport = 0", f'[edge.dashboard]\nport = {port}\ntoken_env = "SHED_TOKEN"')
    monkeypatch.setenv("SHED_TOKEN", "s3cret")
    node = await EdgeNode(node_env(tmp_path / "shed", text)).start()  # no hub at all: offline only
    try:
        assert node.dashboard is not None and node.dashboard.url == f"http://127.0.0.1:{port}/"
        async with httpx.AsyncClient(base_url=node.dashboard.url, timeout=10) as http:
            assert (await http.get("/")).status_code == 401  # the token is asked for
            page = await http.get("/?token=s3cret")
            assert page.status_code == 200 and "shed" in page.text and "<script src" not in page.text  # nothing from elsewhere
            await until(lambda: node.journal is not None and node.journal.head > 50, 20)
            status = (await http.get("/api/status")).json()  # the cookie from the first visit
            names = {r["name"]: r for r in status["readings"]}
            assert set(names) == {"temp", "motion"} and names["temp"]["value"] is not None
            assert status["live"]["sync"] is None and status["live"]["head"] > 0
            assert any(n["kind"] == "event" and n["text"] == "node started" for n in status["notes"])
            png = await http.get("/plot.png", params={"sensor": "temp", "hours": 1})
            assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
            assert (await http.get("/plot.png", params={"sensor": "nope"})).status_code == 404
    finally:
        await node.stop()
