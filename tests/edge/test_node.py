"""A whole node in process: real sensors, journal, sync to a real hub, its own dashboard, the embedded model."""

from __future__ import annotations

from pathlib import Path

import httpx

from shoal.config import Env, Settings, parse_config
from shoal.edge.hlc import physical
from shoal.edge.journal import CLOCK, OBSERVATION, READING, Journal
from shoal.edge.node import EdgeNode
from shoal.edge.phrase import grounded

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


MODEL_NODE = """
[engine]
threads = 1
max_sequences = 2
context = 1024

[[servers]]
name = "local"
kind = "embedded"
"""

#: a temperature that jumps by 9 °C for 3 s every 6 s (rise, high, fall), and motion after a quiet spell
MODEL_SENSORS = """
[[edge.sensors]]
name = "temp"
label = "temperature"
kind = "simulated"
pattern = "constant"
mean = 20.0
noise = 0.3
decimals = 1
interval = 0.1
unit = "°C"
change = 5
high = 26
anomalies = [{ every = 6, duration = 3, add = 9 }]

[[edge.sensors]]
name = "door"
kind = "simulated"
pattern = "motion"
active_hours = []
idle_rate = 0.3
interval = 0.2
binary = true
"""


async def test_the_embedded_model_phrases_the_nodes_observations_and_every_stored_one_is_grounded(tmp_path: Path) -> None:
    text = MODEL_NODE + node_toml("garage", sensors=MODEL_SENSORS).replace('observe_server = "none"', 'observe_server = "local"') \
        .replace("observe_interval = 3600", "observe_interval = 1.5\ncooldown = 0")
    node = await EdgeNode(node_env(tmp_path / "garage", text)).start()
    try:
        assert node.observer is not None and node.observer.phraser.backend is not None  # the real SmolLM2-135M
        obs = node.observer
        await until(lambda: obs.noted >= 5, 300)
    finally:
        await node.stop()
    j = await Journal.open(tmp_path / "garage" / "edge.db", node="garage")
    try:
        entries = await j.entries(1, j.head)
    finally:
        await j.close()
    readings = {e.seq: e for e in entries if e.kind == READING}
    notes = [e for e in entries if e.kind == OBSERVATION]
    assert len(notes) == obs.noted >= 5
    titles = {"temp": ["temperature", "temp", "°C"], "door": ["door"]}
    rules = set()
    for e in notes:
        b = e.body or {}
        rules.add(b["rule"])
        cited = [v for _, v in b["cites"]]
        # what it cites are the node's own readings, as stored
        assert all(readings[s].value == v and j.sensors[b["sensor"]].id == readings[s].sensor for s, v in b["cites"]), b
        # and the sentence states no number that is not one of them, whoever wrote it
        assert grounded(b["text"], cited, ignore=[*titles[b["sensor"]], "garage"]) is None, b
        assert b["method"] in ("model", "template") and (b["method"] == "template") == ("model_refused" in b), b
        assert 0 < b["confidence"] < 1
    assert len(rules) >= 2 and rules & {"rise", "fall", "high"}, rules
    # phrasing takes seconds while readings keep coming: that must not read as the device clock going back
    assert not [e.body for e in entries if e.kind == CLOCK], "a clock jump was noted, yet the clock never moved"
    # the model was asked for every one of them, and wrote some that passed
    assert obs.phraser.phrased + obs.phraser.rejected == len(notes)
    assert obs.phraser.phrased >= 1 and any(e.body["method"] == "model" for e in notes), [e.body for e in notes]  # type: ignore[index]
