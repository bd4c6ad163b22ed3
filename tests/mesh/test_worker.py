"""A real turn with the server in this process and thinker + memory in a `shoal worker` subprocess."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shoal.runtime.messages import ThoughtStart, TurnSettled
from shoal.runtime.swarm import Swarm

from ..conftest import ROOT
from .conftest import NatsServer, WorkerProcess, mesh_env, mesh_toml

BOB = "Hi! My name is Bob and I live in Leeds."
#: what every turn of this config stores, on either mesh
CORE_KINDS = {"user.turn", "route", "reply.start", "reply.end", "thought.start", "thought.end", "memory.write",
              "memory.done", "turn.settled"}


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
    env = mesh_env(tmp_path / "server", mesh_toml(nats.url))
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

            # 2. kill -9 while the thinker streams: the turn still settles, without it
            listener = swarm.listen(conv.id)
            turn = await swarm.send(conv.id, user.id, "What should I cook tonight? I like pasta.")
            settled = None
            deadline = time.monotonic() + 240
            while settled is None:
                ev = await listener.get(timeout=deadline - time.monotonic())
                if isinstance(ev, ThoughtStart) and ev.turn == turn.message_id:
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

            # 3. it comes back: the next turn is thought about and remembered again
            worker = WorkerProcess(tmp_path / "worker", nats.url).start()
            await wait_alive(swarm, worker, "thinker", "memory")
            third = await swarm.run_turn(conv.id, user.id, "I have a dog called Rex.", timeout=240)
            assert third.settled and third.missing == [] and third.thoughts, worker.output()
            await asyncio.sleep(1)  # a late redelivery would land now

            history = await swarm.conversations.history(conv.id, limit=20)
            users = [m.id for m in history if m.role == "user"]
            assert users == [first.turn, turn.message_id, third.turn]  # no user turn lost
            events = await swarm.conversations.events_since(conv.id, 0)
            replies = [e["turn"] for e in events if e["kind"] == "reply.end" and not e["interjection"]]
            assert sorted(replies) == sorted(users)  # one reply each, none twice
            settles = [e["turn"] for e in events if e["kind"] == "turn.settled"]
            assert sorted(settles) == sorted(users)
            notes = [tuple(r.sources) for r in await swarm.memories.list(user.id, kind="raw")]
            assert len(notes) == len(set(notes))  # no note stored twice
            facts = await swarm.memories.facts(user.id)
            assert len({(f.attribute, f.value) for f in facts}) == len(facts)
    finally:
        worker.stop()
    assert "Traceback" not in worker.output(), worker.output()
    # the worker never opened a database: its home holds nothing but what it was given
    assert not [p for p in (tmp_path / "worker").rglob("*") if p.suffix in (".db", ".sqlite") or p.name.endswith("-wal")]
