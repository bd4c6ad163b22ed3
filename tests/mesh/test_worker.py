"""A real turn with the server in this process and thinker + memory in a `shoal worker` subprocess."""

from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shoal.runtime.messages import ThoughtDelta, TurnSettled
from shoal.runtime.swarm import Swarm

from ..conftest import ROOT
from .conftest import NatsServer, WorkerProcess, mesh_env, mesh_toml

BOB = "Hi! My name is Bob and I live in Leeds."
#: the turn the worker is killed in: facts the new worker must remember (once)
SECOND = "My sister Ana lives in Porto. What should I cook tonight?"
#: what every turn of this config stores, on either mesh
CORE_KINDS = {"user.turn", "route", "reply.start", "reply.end", "thought.start", "thought.end", "memory.write",
              "memory.done", "turn.settled"}


async def until(predicate, what: str, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.1)


async def wait_alive(swarm: Swarm, worker: WorkerProcess, *bots: str, timeout: float = 120) -> None:
    await swarm.warm_up()  # as `shoal up` does: the model and the embedder load before the first turn
    deadline = time.monotonic() + timeout
    while not all(swarm.host.registry.alive(b) for b in bots):
        assert worker.proc is not None and worker.proc.poll() is None, worker.output()
        assert time.monotonic() < deadline, f"the worker did not join: {worker.output()}"
        await asyncio.sleep(0.2)


async def stored_kinds(swarm: Swarm, conv: str, turn: str) -> set[str]:
    return {e["kind"] for e in await swarm.conversations.events_since(conv, 0) if e.get("turn") == turn}


@pytest.mark.timeout(600)  # three real turns over two processes; slow only on a loaded machine
async def test_a_worker_process_runs_thinker_and_memory_and_a_kill_9_loses_and_doubles_nothing(
    tmp_path: Path, nats: NatsServer
) -> None:
    # a short ack_wait: the route the killed worker held comes again a few seconds after it stopped reporting it
    # and the thinker's longer thoughts of the test config: the kill lands while it streams
    toml = mesh_toml(nats.url, extra="ack_wait = 3").replace(
        'name = "thinker"\nrole = "thinker"\nmax_tokens = 16', 'name = "thinker"\nrole = "thinker"\nmax_tokens = 48'
    )
    env = mesh_env(tmp_path / "server", toml)
    worker = WorkerProcess(tmp_path / "worker", nats.url).start()
    try:
        async with Swarm(env) as swarm:
            assert set(swarm.bots) == {"conversation", "primary"}  # thinker and memory are the worker's
            await wait_alive(swarm, worker, "thinker", "memory")
            placement = swarm.host.placement("thinker")
            assert placement["alive"] and placement["runs_on"][0].startswith("worker ")
            user = await swarm.local_user()
            conv = await swarm.conversations.create_conversation(user.id)
            from shoal.server.api import bot_view

            assert bot_view(swarm, user, "thinker")["placement"]["runs_on"] == placement["runs_on"]  # /api/bots
            assert bot_view(swarm, user, "primary")["placement"] == {
                "mesh": "nats", "runs_on": ["server"], "alive": True, "fallback": False,
            }
            listed = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "shoal", "bots", "list"], capture_output=True, text=True, timeout=60,
                env=dict(os.environ, SHOAL_HOME=str(tmp_path / "server"), COLUMNS="250", PYTHONPATH=str(ROOT / "src")),
            )
            thinker_row = next(line for line in listed.stdout.splitlines() if line.startswith("│ thinker"))
            assert "worker " in thinker_row and "alive" in thinker_row, listed.stdout + listed.stderr

            # 1. a full turn: the reply here, the thought and the facts from the worker
            first = await swarm.run_turn(conv.id, user.id, BOB, timeout=240)
            assert first.settled and first.missing == [] and first.reply_status == "complete"
            assert first.thoughts and first.thoughts[0]["bot"] == "thinker" and first.thoughts[0]["text"], worker.output()
            assert {"Bob", "Leeds"} <= {m["value"] for m in first.memories}, worker.output()
            thoughts = await swarm.conversations.thoughts(conv.id)  # written through the server's data service
            assert [t["status"] for t in thoughts] == ["done"] and thoughts[0]["bot"] == "thinker"
            facts = await swarm.memories.facts(user.id)
            assert {f.value for f in facts} >= {"Bob", "Leeds"} and all(f.sources == [first.turn] for f in facts)
            assert CORE_KINDS <= await stored_kinds(swarm, conv.id, first.turn)
            assert swarm.host.data.answered > 0
            statuses = await swarm.thinker_status(conv.id, user=user)  # the worker's live buffer, over the mesh
            assert [st.bot for st in statuses] == ["thinker"] and statuses[0].thought_id == first.thoughts[0]["id"]

            # 2. kill -9 while the thinker streams (a delta from it arrived): the turn still settles, without it
            listener = swarm.listen(conv.id)
            turn = await swarm.send(conv.id, user.id, SECOND)
            settled = None
            deadline = time.monotonic() + 240
            while settled is None:
                ev = await listener.get(timeout=deadline - time.monotonic())
                if isinstance(ev, ThoughtDelta) and ev.turn == turn.message_id:
                    worker.kill()
                if isinstance(ev, TurnSettled) and ev.turn == turn.message_id:
                    settled = ev
            listener.close()
            assert worker.proc is not None and worker.proc.returncode == -9
            assert "thinker" in settled.missing and not settled.timed_out
            assert not swarm.host.placement("thinker")["alive"]
            for _ in range(100):  # the thought it was streaming ends as an error, not "thinking" forever
                orphan = await swarm.conversations.thoughts(conv.id, turn_id=turn.message_id)
                if orphan and orphan[0]["status"] == "error":
                    break
                await asyncio.sleep(0.1)
            assert [t["status"] for t in orphan] == ["error"]

            # 3. a new worker: the route the dead one never acknowledged comes again and is handled there —
            # the turn's thought is thought again (in the same row) and its facts are remembered
            worker = WorkerProcess(tmp_path / "worker", nats.url).start()
            await wait_alive(swarm, worker, "thinker", "memory")

            async def thought_again() -> bool:
                rows = await swarm.conversations.thoughts(conv.id, turn_id=turn.message_id)
                return [r["status"] for r in rows] == ["done"]

            await until(thought_again, f"the killed turn's thought done by the new worker: {worker.output()}", 240)
            redone = await swarm.conversations.thoughts(conv.id, turn_id=turn.message_id)
            assert redone[0]["id"] == orphan[0]["id"] and redone[0]["text"]  # one thought for the turn, now whole
            route = await swarm.host.mesh.js.consumer_info(swarm.host.mesh.config.stream, "thinker-route")
            # JetStream delivered it again (it was never acknowledged): more deliveries than the two routes sent
            assert route.delivered.consumer_seq > 2, route

            async def remembered() -> bool:
                return {"sister Ana", "Porto"} & {f.value for f in await swarm.memories.facts(user.id)} != set()

            await until(remembered, f"the killed turn's facts: {worker.output()}", 240)
            third = await swarm.run_turn(conv.id, user.id, "I have a dog called Rex.", timeout=240)
            assert third.settled and third.missing == [] and third.thoughts, worker.output()
            await asyncio.sleep(1)  # a late redelivery would land now

            # counted from the store
            history = await swarm.conversations.history(conv.id, limit=20)
            users = [m.id for m in history if m.role == "user"]
            assert users == [first.turn, turn.message_id, third.turn]  # no user turn lost
            events = await swarm.conversations.events_since(conv.id, 0)
            # an interjection ("I remember ...": the primary brought the late memory up) is not a second answer
            interjected = {e["message_id"] for e in events if e["kind"] == "reply.end" and e["interjection"]}
            replies = collections.Counter(
                m.reply_to for m in history if m.role == "assistant" and m.bot == "conversation" and m.id not in interjected
            )
            assert replies == {u: 1 for u in users}, replies  # each answered exactly once
            replied = [e["turn"] for e in events if e["kind"] == "reply.end" and not e["interjection"]]
            assert sorted(replied) == sorted(users)  # one reply each, none twice
            settles = [e["turn"] for e in events if e["kind"] == "turn.settled"]
            assert sorted(settles) == sorted(users)
            thoughts = collections.Counter((t["turn_id"], t["bot"], t["status"]) for t in await swarm.conversations.thoughts(conv.id))
            assert thoughts == {(u, "thinker", "done"): 1 for u in users}, thoughts  # each turn thought about once
            notes = collections.Counter(tuple(r.sources) for r in await swarm.memories.list(user.id, kind="raw"))
            # one note per message (the person's, and the replies the memory bot notes too), none twice
            assert set(notes.values()) == {1} and {(u,) for u in users} <= set(notes), notes
            facts = await swarm.memories.facts(user.id)
            assert len({(f.attribute, f.value) for f in facts}) == len(facts), facts  # no fact twice
            by_turn = collections.Counter(s for f in facts for s in f.sources)
            assert by_turn[turn.message_id] >= 1 and all(len(set(f.sources)) == len(f.sources) for f in facts), facts
            for name in ("thinker-route", "memory-route"):  # everything handled was acknowledged
                info = await swarm.host.mesh.js.consumer_info(swarm.host.mesh.config.stream, name)
                assert info.num_ack_pending == 0 and info.num_pending == 0, (name, info)
    finally:
        worker.stop()
    assert "Traceback" not in worker.output(), worker.output()
    # the worker never opened a database: its home holds nothing but what it was given
    assert not [p for p in (tmp_path / "worker").rglob("*") if p.suffix in (".db", ".sqlite") or p.name.endswith("-wal")]
