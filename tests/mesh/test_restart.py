"""The NATS server restarts mid-conversation under a whole swarm: the server here, thinker + memory in a worker."""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path

import pytest

from shoal.runtime.messages import ThoughtStart, TurnSettled
from shoal.runtime.swarm import Swarm

from .conftest import NatsServer, WorkerProcess, mesh_env, mesh_toml
from .test_worker import BOB, until, wait_alive


@pytest.mark.timeout(900)  # four real turns over two processes and a restart; slow only on a loaded machine
async def test_a_nats_restart_mid_conversation_loses_no_user_turn_and_doubles_no_reply_or_memory(
    tmp_path: Path, nats: NatsServer
) -> None:
    env = mesh_env(tmp_path / "server", mesh_toml(nats.url))
    worker = WorkerProcess(tmp_path / "worker", nats.url).start()
    try:
        async with Swarm(env) as swarm:
            await wait_alive(swarm, worker, "thinker", "memory")
            user = await swarm.local_user()
            conv = await swarm.conversations.create_conversation(user.id)
            nc = swarm.host.mesh.nc

            # 1. before: a whole turn
            first = await swarm.run_turn(conv.id, user.id, BOB, timeout=240)
            assert first.settled and first.missing == [] and first.thoughts, worker.output()

            # 2. during: NATS stops while the thinker in the worker streams the second turn's thought...
            listener = swarm.listen(conv.id)
            second = await swarm.send(conv.id, user.id, "What should I cook tonight? I like pasta.")
            deadline = time.monotonic() + 240
            while True:
                ev = await listener.get(timeout=deadline - time.monotonic())
                if isinstance(ev, ThoughtStart) and ev.turn == second.message_id:
                    break
            nats.stop()

            async def offline() -> bool:
                return not nc.is_connected

            await until(offline, "the server saw NATS go")
            # ...a third turn is sent while it is away: stored, and handed to the mesh once JetStream's
            # confirmation timed out (the publish waits in the client for NATS to come back)...
            third = await swarm.send(conv.id, user.id, "I have a dog called Rex.")
            registry = swarm.host.registry

            async def silent_long_enough() -> bool:
                # past the point where a silent worker counts as dead (and a few reaper ticks more)
                last = max((w.seen for w in registry.workers.values()), default=0.0)  # none: reaped already
                return time.monotonic() - last > registry.heartbeat * registry.missed + 1

            await until(silent_long_enough, "the workers silent for longer than their grace")
            assert not nc.is_connected
            nats.start()  # ...and NATS comes back: same port, same JetStream store
            settled: dict[str, list[str]] = {}
            while not {second.message_id, third.message_id} <= set(settled):
                ev = await listener.get(timeout=deadline - time.monotonic())
                if isinstance(ev, TurnSettled):
                    settled[ev.turn] = list(ev.missing)
            listener.close()
            # NATS away is not the worker dead: the primary waited for its thinker and memory bot
            assert settled == {second.message_id: [], third.message_id: []}, settled

            # 3. after: the mesh, the worker and its bots work as before
            await wait_alive(swarm, worker, "thinker", "memory")
            fourth = await swarm.run_turn(conv.id, user.id, "My sister Ana lives in Porto.", timeout=240)
            assert fourth.settled and fourth.missing == [] and fourth.reply_status == "complete", worker.output()
            await asyncio.sleep(1)  # a late redelivery would land now

            # counted from the store
            history = await swarm.conversations.history(conv.id, limit=50)
            users = [m.id for m in history if m.role == "user"]
            assert users == [first.turn, second.message_id, third.message_id, fourth.turn]  # no user turn lost
            replies = collections.Counter(m.reply_to for m in history if m.role == "assistant" and m.bot == "conversation")
            assert replies == {u: 1 for u in users}, replies  # each answered exactly once
            events = await swarm.conversations.events_since(conv.id, 0)
            kinds = collections.Counter(
                (e["kind"], e.get("turn")) for e in events if not (e["kind"] == "reply.end" and e["interjection"])
            )
            for u in users:  # each turn recorded, answered, remembered and settled once
                for kind in ("user.turn", "reply.end", "memory.done", "turn.settled"):
                    assert kinds[(kind, u)] == 1, (kind, u, kinds)
            thoughts = collections.Counter(t["turn_id"] for t in await swarm.conversations.thoughts(conv.id))
            assert all(n == 1 for n in thoughts.values()), thoughts  # nobody thought about a turn twice
            ends = collections.Counter(e["thought_id"] for e in events if e["kind"] == "thought.end")
            assert set(ends.values()) == {1}, ends  # and each thought ended once (none taken for orphaned)
            notes = [tuple(r.sources) for r in await swarm.memories.list(user.id, kind="raw")]
            assert len(notes) == len(set(notes)), notes  # no note stored twice
            facts = await swarm.memories.facts(user.id)
            assert len({(f.attribute, f.value) for f in facts}) == len(facts), facts  # no fact twice
            assert {"Bob", "Leeds"} <= {f.value for f in facts}
            # the third turn reached the journal twice (JetStream's unconfirmed publish, then the plain one
            # sent after it) and was recorded once
            assert swarm.host.mesh.redelivered_dropped >= 1
    finally:
        worker.stop()
    assert "Traceback" not in worker.output(), worker.output()
