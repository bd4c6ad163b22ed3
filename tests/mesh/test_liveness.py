"""Liveness: heartbeats, death after missed ones, hand-over to a worker and the in-process fallback."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

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
