"""The hub uses what nodes sent: recall by node, place and time, only for users granted the node."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from shoal.bots.conversation import render_memory
from shoal.config import Env, Settings, parse_config
from shoal.edge.hubstore import HubStore
from shoal.edge.journal import FACT, OBSERVATION, Journal, NewEntry
from shoal.edge.recall import mentioned, recall, window
from shoal.edge.wire import decode, encode
from shoal.runtime.messages import MemoryItem, RecallQuery
from shoal.runtime.swarm import Swarm
from shoal.store.db import Database
from shoal.types import ChatMessage

from ..conftest import TEST_CONFIG
from .conftest import Clock, hub_toml

QUESTION = "What happened in the garage last night?"


def last_night(hour: int, minute: int = 0) -> float:
    today = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0)
    day = today - timedelta(days=1) if hour >= 12 else today
    return (day + timedelta(hours=hour, minutes=minute)).timestamp()


def test_a_question_names_its_time_window_on_the_hubs_clock() -> None:
    now = datetime(2026, 5, 12, 10, 30).timestamp()
    since, until = window(QUESTION, now)  # type: ignore[misc]
    assert datetime.fromtimestamp(since) == datetime(2026, 5, 11, 18, 0)
    assert datetime.fromtimestamp(until) == datetime(2026, 5, 12, 8, 0)
    assert window("anything in the last 3 hours?", now) == (now - 3 * 3600, now)
    assert datetime.fromtimestamp(window("what about yesterday", now)[0]) == datetime(2026, 5, 11)  # type: ignore[index]
    assert window("how are you?", now) is None


async def send_node(hub: HubStore, home: Path, name: str, location: str, notes: list[tuple[float, int, dict]]) -> None:  # type: ignore[type-arg]
    """A node's journal with observations at given times, synced to the hub through the wire format."""
    clock = Clock(min(t for t, _, _ in notes) - 60)
    j = await Journal.open(home / f"{name}.db", node=name, wall=clock)
    for t, kind, body in notes:
        clock.t = t
        await j.append([NewEntry(kind, int(t * 1000), body=body)])
    # the node says hello now, on a right clock: its notes keep their own times
    assert (await hub.hello({"node": name, "uid": j.uid, "head": j.head, "first": 1, "wall_ms": int(time.time() * 1000),
                             "location": location}))["ok"]
    rows = await j.rows(1, j.head)
    await hub.ingest([decode(encode(name, j.uid, 1, j.head, rows))])
    await j.close()


async def test_a_chat_on_the_hub_recalls_the_nodes_observation_with_provenance_and_only_for_ana(tmp_path: Path) -> None:
    # the swarm without thinker rules and on one thread: the turn is about recall, and the cores are shared
    swarm_config = TEST_CONFIG.split("[[routing.rules]]")[0].replace("[engine]\n", "[engine]\nthreads = 1\n")
    text = swarm_config + hub_toml("nats://127.0.0.1:1", grants='grants = { garage = ["ana"] }')
    home = tmp_path / "hub"
    home.mkdir()
    (home / "shoal.toml").write_text(text)
    env = Env(Settings(home=home), parse_config(text))
    async with Swarm(env) as swarm:
        ana = await swarm.accounts.create_user("ana", "ana-password-1")
        bob = await swarm.accounts.create_user("bob", "bob-password-1")
        hub = HubStore(swarm.db)
        motion = {"text": "In the garage, motion was active twice, at an hour when it is usually quiet.", "sensor": "motion",
                  "rule": "unusual_activity", "confidence": 0.9, "method": "template", "cites": [[41, 1.0], [43, 1.0]]}
        await send_node(hub, tmp_path, "garage", "garage", [
            (last_night(14), OBSERVATION, {"text": "In the garage, temperature rose from 18 to 24 °C.", "confidence": 0.6}),
            (last_night(23, 40), OBSERVATION, motion),
            (last_night(23, 41), FACT, {"key": "routine:motion", "text": "Motion in the garage is usually active 07:00–09:00.",
                                        "confidence": 0.8}),
        ])
        await send_node(hub, tmp_path, "attic", "attic", [
            (last_night(23, 50), OBSERVATION, {"text": "In the attic, motion was active at an hour when it is usually quiet.",
                                               "confidence": 0.9}),
        ])
        # the search behind it: the garage's night, strongest first; nothing of the attic (ana may not see it)
        found = await recall(swarm.db, env.config.edge, ana, QUESTION, limit=5)
        assert [n["text"] for n in found] == [motion["text"]]
        assert await recall(swarm.db, env.config.edge, bob, QUESTION, limit=5) == []

        # what the model is asked with: every request the conversation bot makes, as it makes it
        bot = swarm.bots["conversation"]
        sent: list[list[ChatMessage]] = []
        make_request = bot.request

        def request(messages: list[ChatMessage], **kw: Any) -> Any:
            sent.append(list(messages))
            return make_request(messages, **kw)

        bot.request = request  # type: ignore[method-assign]
        conv = await swarm.conversations.create_conversation(ana.id)
        result = await swarm.run_turn(conv.id, ana.id, QUESTION, timeout=180)
        assert result.reply_status == "complete" and result.reply.strip()
        assert [m["id"] for m in result.recalled if m["id"].startswith("edge:")], result.recalled
        # what the reply was given, with provenance, as the websocket and the headspace see it
        events = await swarm.conversations.events_since(conv.id, 0)
        starts = [e for e in events if e["kind"] == "reply.start"]
        edge = [m for m in starts[0]["recalled"] if m["id"].startswith("edge:")]
        assert len(edge) == 1, edge
        item = edge[0]
        assert item["kind"] == "observation" and item["text"] == motion["text"] and item["scope"] == "node:garage"
        assert item["confidence"] == 0.9 and abs(item["created_at"] - last_night(23, 40)) < 1  # the hub time of the entry
        assert item["sources"][0].startswith("edge:garage:") and "edge:garage:41" in item["sources"]  # the cited readings

        # the context the model was given says it as a node's observation, with its provenance — not as her words
        assert sent, "the reply was not generated by the model"
        prompt = sent[0][0].content
        assert sent[0][0].role == "system" and "What you remember:" in prompt
        line = next((ln for ln in prompt.splitlines() if motion["text"] in ln), None)
        assert line is not None, prompt
        when = datetime.fromtimestamp(last_night(23, 40)).strftime("%a %d %b at 23:40")
        assert line == (f"- Observed by node garage on {when} (confidence 0.90): {motion['text']} "
                        f"[from {item['sources'][0]}, citing edge:garage:41, edge:garage:43]"), line
        assert "The user said" not in line and "You once said" not in line
        assert "attic" not in prompt  # nothing of a node ana may not see

        # bob asks the same through the same memory bot: none of ana's node comes back
        res = await swarm.bots["memory"].on_recall_query(RecallQuery(user_id=bob.id, conversation="", text=QUESTION, bot="conversation"))
        assert not [m for m in res.items if m.id.startswith("edge:")]


async def test_naming_a_node_without_a_time_gives_its_latest_observations_and_facts(tmp_path: Path) -> None:
    db = await Database(tmp_path / "shoal.db").open()
    try:
        cfg = parse_config(hub_toml("nats://127.0.0.1:1", grants='grants = { "site:home" = ["users"] }')).edge
        hub = HubStore(db)
        now = time.time()
        await send_node(hub, tmp_path, "shed", "tool shed", [(now - 100, OBSERVATION, {"text": "The shed door opened."}),
                                                             (now - 50, FACT, {"key": "k", "text": "The shed is usually cold."})])
        node = (await hub.nodes())[0]
        assert [n.name for n in mentioned("anything new in the tool shed?", [node])] == ["shed"]
        await db.write(lambda c: c.execute("UPDATE edge_nodes SET site = 'home'"))
        from shoal.store.conversations import User

        anyone = User("u1", "carol", False, now)
        got = await recall(db, cfg, anyone, "how is the shed?", limit=5)
        assert [n["kind"] for n in got] == ["observation", "fact"]
    finally:
        await db.close()


def test_a_recalled_node_fact_reads_as_learned_by_the_node_and_the_persons_own_words_stay_theirs() -> None:
    at = datetime(2026, 5, 12, 2, 14).timestamp()
    fact = MemoryItem(id="edge:shed:9", kind="fact", text="The shed is usually cold.", scope="node:shed", created_at=at,
                      confidence=0.8, sources=["edge:shed:9"])
    assert render_memory(fact) == "- Learned by node shed on Tue 12 May at 02:14 (confidence 0.80): The shed is usually cold. [from edge:shed:9]"
    own = MemoryItem(id="m1", kind="fact", text="I live in Lisbon", created_at=at)
    assert render_memory(own) == '- The user said: "I live in Lisbon"'
