"""Sync between a real journal and a real hub over a real nats-server (one process, two roles)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from shoal.config import parse_config
from shoal.edge.hub import EdgeHub
from shoal.edge.journal import OBSERVATION, READING, Journal, NewEntry
from shoal.edge.sync import EdgeSync
from shoal.store.db import Database

from .conftest import Clock, NatsServer, assert_exact_copy, hub_facts, hub_toml, node_toml


async def open_journal(path: Path, node: str, n: int, step_ms: int = 1000) -> Journal:
    """A journal whose clock was ``n`` steps ago while ``fill`` writes, then follows the real clock."""
    clock = Clock(time.time() - n * step_ms / 1000 - 1)
    j = await Journal.open(path, node=node, wall=clock)
    j.test_clock = clock  # type: ignore[attr-defined]
    return j


async def fill(j: Journal, n: int, *, step_ms: int = 1000) -> None:
    """``n`` entries, one every ``step_ms``, ending about now (a node that was offline for a while)."""
    s = await j.declare_sensor("temp", "simulated", "°C")
    t0 = j.wall_ms() + 1
    items = [NewEntry(READING, t0 + i * step_ms, s.id, round(20 + (i % 50) / 10, 1)) for i in range(n)]
    items[n // 2] = NewEntry(OBSERVATION, t0 + (n // 2) * step_ms, body={"text": "In the shed, temp rose from 20 to 24.9 °C.",
                                                                           "sensor": "temp", "confidence": 0.7})
    for i in range(0, n, 5000):
        await j.append(items[i : i + 5000])
    j.test_clock.t = None  # type: ignore[attr-defined]


async def until(pred, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError("not in time")
        await asyncio.sleep(0.05)


async def start_hub(home: Path, nats: str) -> tuple[Database, EdgeHub]:
    cfg = parse_config(hub_toml(nats)).edge
    db = await Database(home / "shoal.db").open()
    hub = EdgeHub(db, cfg)
    await hub.start()
    await until(lambda: hub.status.state == "running", 30)  # the stream exists from here on
    return db, hub


async def test_a_backlog_reaches_the_hub_exactly_once_and_is_acknowledged(tmp_path: Path, nats_server: NatsServer) -> None:
    cfg = parse_config(node_toml("shed", nats_server.url)).edge
    j = await open_journal(tmp_path / "node" / "edge.db", "shed", 12_000)
    await fill(j, 12_000)
    db, hub = await start_hub(tmp_path / "hub", nats_server.url)
    try:
        sync = EdgeSync(j, cfg)
        stop = asyncio.Event()
        assert await asyncio.wait_for(sync.run(stop, until_caught_up=True), 60)
        assert j.acked == j.head
        assert (await j.state())["acked"] == str(j.head)  # persisted: a restart resumes from here
        assert sync.status.sent_batches >= 12_000 // cfg.batch
        notes = await hub.store.notes(["shed"])
        assert [n["text"] for n in notes] == ["In the shed, temp rose from 20 to 24.9 °C."]
    finally:
        await hub.stop()
        await db.close()
        await j.close()
    assert_exact_copy(tmp_path / "hub", tmp_path / "node", "shed")


async def test_the_node_waits_when_the_hub_is_away_and_the_hub_catches_up_later(tmp_path: Path, nats_server: NatsServer) -> None:
    cfg = parse_config(node_toml("barn", nats_server.url)).edge  # max_unacked = 5000
    # the hub runs once (it creates the stream), then goes away
    db, hub = await start_hub(tmp_path / "hub", nats_server.url)
    await hub.stop()
    await db.close()
    j = await open_journal(tmp_path / "node" / "edge.db", "barn", 20_000)
    await fill(j, 20_000)
    sync = EdgeSync(j, cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(sync.run(stop))
    try:
        # backpressure: no more than max_unacked (rounded to a batch) goes out while nobody commits
        await until(lambda: sync.status.state == "waiting for hub", 30)
        assert j.acked == 0 and j.published <= cfg.max_unacked + cfg.batch
        db, hub = await start_hub(tmp_path / "hub", nats_server.url)
        await until(lambda: j.acked == j.head, 60)
    finally:
        stop.set()
        await task
        await hub.stop()
        await db.close()
        await j.close()
    assert_exact_copy(tmp_path / "hub", tmp_path / "node", "barn")


async def test_a_node_that_resends_everything_adds_no_duplicate(tmp_path: Path, nats_server: NatsServer) -> None:
    cfg = parse_config(node_toml("loft", nats_server.url)).edge
    j = await open_journal(tmp_path / "node" / "edge.db", "loft", 3000)
    await fill(j, 3000)
    db, hub = await start_hub(tmp_path / "hub", nats_server.url)
    try:
        assert await asyncio.wait_for(EdgeSync(j, cfg).run(asyncio.Event(), until_caught_up=True), 60)
        # as if its state were lost, it sends the whole journal again months later: beyond JetStream's
        # duplicate window (other batch boundaries = other message ids) only the hub's key stops them
        later = cfg.model_copy(update={"batch": 700})
        again = EdgeSync(j, later)
        again._pull_from = 1
        stop = asyncio.Event()
        task = asyncio.create_task(again.run(stop))
        await until(lambda: hub_facts(tmp_path / "hub", "loft")["duplicates"] >= 3000, 60)
        stop.set()
        await task
    finally:
        await hub.stop()
        await db.close()
        await j.close()
    assert_exact_copy(tmp_path / "hub", tmp_path / "node", "loft")


async def test_the_hub_pulls_what_the_stream_lost_while_it_was_away(tmp_path: Path, nats_server: NatsServer) -> None:
    import nats

    cfg = parse_config(node_toml("byre", nats_server.url)).edge
    db, hub = await start_hub(tmp_path / "hub", nats_server.url)
    await hub.stop()
    await db.close()
    j = await open_journal(tmp_path / "node" / "edge.db", "byre", 3000)
    await fill(j, 3000)
    sync = EdgeSync(j, cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(sync.run(stop))
    try:
        await until(lambda: j.published >= 3000, 30)  # in the stream, the hub away
        nc = await nats.connect(nats_server.url)
        await nc.jetstream().purge_stream(cfg.stream)  # ...and the stream loses it (a replaced server, a purge)
        await nc.close()
        db, hub = await start_hub(tmp_path / "hub", nats_server.url)
        await until(lambda: j.acked == j.head, 60)  # the hub saw the hole and asked the node again
        assert hub.status.pulls >= 1
    finally:
        stop.set()
        await task
        await hub.stop()
        await db.close()
        await j.close()
    assert_exact_copy(tmp_path / "hub", tmp_path / "node", "byre")


async def test_a_second_journal_under_a_known_name_is_refused_with_what_to_do(tmp_path: Path, nats_server: NatsServer) -> None:
    cfg = parse_config(node_toml("twin", nats_server.url)).edge
    db, hub = await start_hub(tmp_path / "hub", nats_server.url)
    first = await open_journal(tmp_path / "a" / "edge.db", "twin", 100)
    await fill(first, 100)
    second = await open_journal(tmp_path / "b" / "edge.db", "twin", 100)  # a reset SD card, or a copy-paste name
    await fill(second, 100)
    try:
        assert await asyncio.wait_for(EdgeSync(first, cfg).run(asyncio.Event(), until_caught_up=True), 30)
        other = EdgeSync(second, cfg)
        stop = asyncio.Event()
        task = asyncio.create_task(other.run(stop))
        await until(lambda: other.status.state == "error", 30)
        stop.set()
        await task
        assert "another journal" in (other.status.last_error or "") and "shoal edge forget twin" in (other.status.hint or "")
        node = (await hub.store.nodes())[0]
        assert node.uid == first.uid and node.contig == first.head and node.rejected >= 1
    finally:
        await hub.stop()
        await db.close()
        await first.close()
        await second.close()
