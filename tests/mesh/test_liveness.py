"""Liveness: heartbeats, death after missed ones, hand-over to a worker and the in-process fallback."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from shoal.config import parse_config
from shoal.runtime.messages import PROTOCOL_VERSION
from shoal.runtime.swarm import Swarm
from shoal.runtime.worker import Worker
from shoal.runtime.workers import Registry

from .conftest import MESH_CONFIG, NatsServer, mesh_env, mesh_toml


def test_a_worker_is_dead_after_its_missed_heartbeats_and_its_bots_are_lost() -> None:
    reg = Registry(parse_config(MESH_CONFIG), heartbeat=0.05, missed=2, allowed_roles=frozenset({"thinker", "memory"}))
    reg.check(["thinker"], PROTOCOL_VERSION)
    assert reg.join("w1", ["thinker", "memory"]) == ["thinker", "memory"]
    assert reg.join("w2", ["thinker"]) == []  # thinker already had a worker
    time.sleep(0.06)
    reg.beat("w1")
    reg.beat("w2")
    assert reg.reap() == []
    time.sleep(0.12)
    reg.beat("w2")
    assert reg.reap() == ["memory"]  # w1 is dead; thinker still has w2
    assert [w.id for w in reg.alive("thinker")] == ["w2"] and reg.lost == {"memory"}
    assert reg.leave("w2") == ["thinker"] and reg.lost == {"memory", "thinker"}


async def wait(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_the_server_runs_a_remote_bot_itself_while_no_worker_has_it(tmp_path: Path, nats: NatsServer) -> None:
    env = mesh_env(tmp_path / "server", mesh_toml(nats.url, remote='["thinker"]', extra='fallback = "inprocess"'))
    async with Swarm(env) as swarm:
        assert "thinker" not in swarm.bots  # left to a worker at first
        await wait(lambda: "thinker" in swarm.bots)  # none came within the grace: the fallback runs it here
        assert swarm.host.placement("thinker") == {"mesh": "nats", "runs_on": ["server"], "alive": True, "fallback": True}

        worker = await Worker(env.config.mesh, ["thinker"], parse_config(MESH_CONFIG)).start(warm_up=False)
        await wait(lambda: "thinker" not in swarm.bots)  # handed over: the server's copy stopped
        assert swarm.host.placement("thinker")["runs_on"][0].startswith(f"worker {worker.id}")

        await worker.stop()  # it leaves: the fallback takes over again at once
        await wait(lambda: "thinker" in swarm.bots, timeout=5)
        assert swarm.host.placement("thinker")["fallback"] is True


async def test_reads_of_a_workers_memory_bot_are_answered_from_the_servers_store_and_stay_per_user(
    tmp_path: Path, nats: NatsServer
) -> None:
    # the memory bot runs in workers (none here): its recall and facts, asked by the server's conversation
    # bot, are answered in the server by the same code, without the two hops; its writes are not
    from shoal.errors import NotFound
    from shoal.runtime.messages import ConsentDecision, FactsQuery, FactsResult, RecallQuery, RecallResult

    env = mesh_env(tmp_path / "server", mesh_toml(nats.url))
    async with Swarm(env) as swarm:
        assert "memory" not in swarm.bots
        ana = await swarm.conversations.ensure_user("ana")
        bob = await swarm.conversations.ensure_user("bob")
        ana_conv = await swarm.conversations.create_conversation(ana.id)
        bob_conv = await swarm.conversations.create_conversation(bob.id)
        for user, conv, city in ((ana, ana_conv, "York"), (bob, bob_conv, "Leeds")):
            msg = await swarm.conversations.add_message(conv.id, "user", f"I live in {city}.", user_id=user.id)
            await swarm.memories.add(user.id, "fact", f"I live in {city}.", attribute="location", value=city, sources=[msg.id],
                                     conversation_id=conv.id)
        mesh = swarm.host.mesh
        calls = swarm.host.data.answered
        recall = await mesh.request(
            "bot.memory.control", RecallQuery(user_id=ana.id, conversation=ana_conv.id, text="where do I live", bot="conversation"),
            timeout=30,
        )
        facts = await mesh.request(
            "bot.memory.control", FactsQuery(user_id=ana.id, conversation=ana_conv.id, bot="conversation"), timeout=30
        )
        assert isinstance(recall, RecallResult) and isinstance(facts, FactsResult)
        assert "York" in {m.value for m in recall.items} and "Leeds" not in {m.value for m in recall.items}
        assert [m.value for m in facts.items] == ["York"]  # ana's, never bob's
        bobs = await mesh.request("bot.memory.control", FactsQuery(user_id=bob.id, conversation=bob_conv.id, bot="conversation"),
                                  timeout=30)
        assert [m.value for m in bobs.items] == ["Leeds"]  # type: ignore[attr-defined]
        assert mesh.answered_here == 3 and swarm.host.data.answered == calls  # here: no data-service call, no hop
        with pytest.raises(NotFound, match="nobody answers"):  # a write is the worker's: none runs one
            await mesh.request("bot.memory.control", ConsentDecision(conversation=ana_conv.id, pending_ids=["x"], approved=True),
                               timeout=5)
        assert mesh.answered_here == 3
