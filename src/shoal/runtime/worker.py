"""A worker: some of the swarm's bots in another process or on another machine (``shoal worker``).

It joins the server over NATS (``workers.py``): the server checks the bots
and the protocol version and answers with its config. The worker then runs
those bots on its own models — the servers of its own shoal.toml (default:
the embedded model), plus the server's for names it does not have — with
``RemoteStore`` views of history and memory (``dataservice.py``): a worker
never opens a database, so it can run on a machine without shoal's data.
Once its bots are subscribed it heartbeats; the first heartbeat registers it.

Shutdown order: leave (the server stops counting on it), stop the bots
(intake, then their work), close the models, close the connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from typing import Any

from shoal.config import ShoalConfig
from shoal.errors import BackendUnavailable
from shoal.runtime import nats_wire as wire
from shoal.runtime.bot import Bot, BotContext
from shoal.runtime.dataservice import RemoteStore
from shoal.runtime.mesh_config import MeshConfig
from shoal.runtime.messages import PROTOCOL_VERSION
from shoal.runtime.nats_mesh import NatsMesh
from shoal.runtime.workers import HEARTBEAT, JOIN, LEAVE, dumps
from shoal.store.ids import new_id

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, mesh: MeshConfig, bots: list[str], local: ShoalConfig, *, worker_id: str | None = None) -> None:
        self.mesh_config = mesh
        self.names = bots
        self.local = local
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{new_id()[-6:]}"
        self.mesh = NatsMesh(mesh, name=f"shoal-worker-{self.id}")
        self.config: ShoalConfig | None = None
        self.cluster: Any = None
        self.bots: dict[str, Bot] = {}
        self._beat: asyncio.Task[None] | None = None

    async def start(self, *, warm_up: bool = True) -> "Worker":
        import nats.errors

        await self.mesh.start()
        hello = {"worker": self.id, "bots": self.names, "proto": PROTOCOL_VERSION, "host": socket.gethostname(), "pid": os.getpid()}
        try:
            reply = await self.mesh.nc.request(JOIN, dumps(hello), timeout=10)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            await self.mesh.close()
            raise BackendUnavailable(
                f"no shoal server answers on NATS at {self.mesh_config.url}",
                hint="start the server with `shoal up --mesh nats` against the same NATS server",
            ) from None
        if (reply.headers or {}).get(wire.KIND) == "x":
            await self.mesh.close()
            raise wire.error_from(json.loads(reply.data))
        self.config = self._merge(json.loads(reply.data)["config"])
        from shoal.cluster.core import Cluster
        from shoal.runtime.swarm import ClusterViews, bot_classes

        self.cluster = Cluster(self.config, name=f"worker-{self.id}")
        await self.cluster.start()
        if warm_up:
            starts = [m.backend.start() for m in self.cluster.members.values() if hasattr(m.backend, "start")]
            await asyncio.gather(*starts)
        timeout = self.mesh_config.data_timeout
        for name in self.names:
            bc = self.config.bot(name)
            ctx = BotContext(
                self.mesh, RemoteStore(self.mesh.nc, "conversations", name, timeout=timeout),  # type: ignore[arg-type]
                RemoteStore(self.mesh.nc, "memories", name, timeout=timeout),  # type: ignore[arg-type]
                ClusterViews(self.cluster), self.config,
            )
            bot = bot_classes()[bc.role](bc, ctx)
            self.bots[name] = bot
            await bot.start()
        await self.mesh.ready()
        await self._heartbeat_once()
        self._beat = asyncio.create_task(self._heartbeat(), name="worker:heartbeat")
        return self

    def _merge(self, server: dict[str, Any]) -> ShoalConfig:
        """The server's bots, routing and memory on this machine's models (and none of its edge hub)."""
        mine = {s.name: s.model_dump(mode="json") for s in self.local.servers}
        servers = list(mine.values()) + [s for s in server.get("servers", []) if s["name"] not in mine]
        data = dict(server, servers=servers, engine=self.local.engine.model_dump(mode="json"))
        data.pop("edge", None)
        return ShoalConfig.model_validate(data)

    async def _heartbeat_once(self) -> None:
        body = dumps({"worker": self.id, "bots": self.names, "proto": PROTOCOL_VERSION, "host": socket.gethostname(),
                      "pid": os.getpid()})
        await self.mesh.nc.publish(HEARTBEAT, body)
        await self.mesh.nc.flush(timeout=5)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.mesh_config.heartbeat)
            try:
                await self._heartbeat_once()
            except Exception as exc:  # noqa: BLE001 - NATS is away: the client reconnects, heartbeats go on
                log.debug("heartbeat not sent: %s", exc)

    async def stop(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            await asyncio.gather(self._beat, return_exceptions=True)
        try:
            if self.mesh.nc is not None and self.mesh.nc.is_connected:
                await self.mesh.nc.publish(LEAVE, dumps({"worker": self.id}))
                await self.mesh.nc.flush(timeout=2)
        except Exception:  # noqa: BLE001 - leaving is a courtesy; missed heartbeats say the same
            pass
        for bot in self.bots.values():
            await bot.stop()
        if self.cluster is not None:
            await self.cluster.stop()
        await self.mesh.close()

    async def run_forever(self) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()
