"""The server's side of the mesh on NATS: the data service, the workers' registry, grants and fallback.

``Swarm`` builds a ``MeshHost`` when ``[mesh] kind = "nats"``; it owns the
``NatsMesh`` and, once the database is open, connects and serves:

* ``shoal.data`` (``DataService``): workers' bots read and write history and
  memory here, within their role's methods and the turn grants; the grants
  are given as the server publishes each user turn;
* the workers' join / heartbeat / leave / status subjects (``workers.py``);
* durable consumers for every remote bot, made at start, so the routes of
  turns sent before a worker first joins wait for it in the stream.

Placement: a bot listed in ``[mesh] remote`` is not started by the server;
any bot of a role that can run remotely is handed over (the server's copy
stops) when a worker joins with it. When the last worker of a bot dies —
it left, or missed ``missed`` heartbeats — the primary stops waiting for it
(turns settle with it in ``missing``) and ``fallback = "inprocess"`` starts it
in the server until a worker is back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from shoal.errors import ShoalError
from shoal.runtime import nats_wire as wire
from shoal.runtime.dataservice import ROLE_METHODS, DataService, Grants
from shoal.runtime.messages import UserTurn
from shoal.runtime.nats_mesh import DURABLE_SUBJECTS, NatsMesh
from shoal.runtime.workers import HEARTBEAT, JOIN, LEAVE, STATUS, Registry, dumps

if TYPE_CHECKING:
    from shoal.runtime.swarm import Swarm

log = logging.getLogger(__name__)

REMOTE_ROLES = frozenset(ROLE_METHODS)


class MeshHost:
    def __init__(self, swarm: "Swarm") -> None:
        self.swarm = swarm
        self.cfg = swarm.config.mesh
        self.mesh = NatsMesh(self.cfg, name="shoal-server")
        self.mesh.before_publish = self._before_publish
        self.mesh.answer_here = self._answer_here
        #: bots of workers, made here (never started) to answer their reads from the server's store
        self._readers: dict[str, Any] = {}
        self.grants = Grants(seconds=swarm.config.routing.settle_timeout * 2 + 120)
        self.registry = Registry(
            swarm.config, heartbeat=self.cfg.heartbeat, missed=self.cfg.missed, allowed_roles=REMOTE_ROLES,
        )
        #: remote bots the server runs itself because no worker has them
        self.fallback_running: set[str] = set()
        self.data: DataService | None = None
        self._subs: list[Any] = []
        self._reaper: asyncio.Task[None] | None = None
        self._t0 = time.monotonic()
        self._lock = asyncio.Lock()

    # -- placement -------------------------------------------------------------------
    def runs_here(self, name: str) -> bool:
        """Should the server run this bot now?"""
        if self.registry.alive(name):
            return False
        return name not in self.cfg.remote or name in self.fallback_running

    def missing(self, names: list[str]) -> list[str]:
        """Of ``names``, the bots nobody runs now (their workers died, no fallback took over)."""
        return [n for n in names if n in self.registry.lost and n not in self.swarm.bots and not self.registry.alive(n)]

    def placement(self, name: str) -> dict[str, Any]:
        workers = self.registry.alive(name)
        if workers:
            return {"mesh": "nats", "runs_on": [f"worker {w.id} ({w.host} pid {w.pid})" for w in workers], "alive": True,
                    "workers": len(workers)}
        if name in self.swarm.bots:
            return {"mesh": "nats", "runs_on": ["server"], "alive": True, "fallback": name in self.fallback_running}
        return {"mesh": "nats", "runs_on": [], "alive": False, "missing": name in self.registry.lost}

    def _answer_here(self, subject: str, msg: Any) -> Any:
        """The handler of this process for a control request, or None (it goes over NATS).

        A bot running here answers its own requests without the round trip through NATS. A read
        (``Bot.reads``: the memory bot's recall and facts) of a bot a worker runs is answered from the
        server's store by the same bot code — the worker would only ask this server's data service for
        it (two round trips instead of none); anything else goes to the worker.
        """
        if not (subject.startswith("bot.") and subject.endswith(".control")):
            return None
        name = subject[4:-8]
        bot = self.swarm.bots.get(name)
        if bot is not None:
            return bot._control
        try:
            bc = self.swarm.config.bot(name)
        except ShoalError:
            return None
        from shoal.runtime.swarm import bot_classes

        cls = bot_classes().get(bc.role)
        if cls is None or not isinstance(msg, cls.reads) or not bc.enabled or not self.swarm.started:
            return None
        reader = self._readers.get(name)
        if reader is None or reader.config is not bc:  # made again after a reload gave the bot another config
            reader = self._readers[name] = self.swarm._make_bot(bc)
        return reader._control

    # -- lifecycle -------------------------------------------------------------------
    async def connect(self) -> None:
        """Connect to NATS and serve the data service and the workers' subjects (the DB is open)."""
        await self.mesh.start()
        nc = self.mesh.nc
        self.data = DataService(nc, self.swarm.conversations, self.swarm.memories, self.swarm.config, self.grants)
        self.data.remote_ok = lambda name: not self.runs_here(name) or bool(self.registry.alive(name))
        await self.data.start()
        self._subs += [
            await nc.subscribe(JOIN, queue="shoal-host", cb=self._on_join),
            await nc.subscribe(HEARTBEAT, cb=self._on_heartbeat),
            await nc.subscribe(LEAVE, cb=self._on_leave),
            await nc.subscribe(STATUS, queue="shoal-host", cb=self._on_status),
        ]
        if self.mesh.durable:
            for bc in self.swarm.config.bots:
                if bc.name in self.cfg.remote:
                    from shoal.runtime.swarm import bot_classes

                    for pattern in bot_classes()[bc.role].subscribes:
                        if pattern in DURABLE_SUBJECTS:
                            await self.mesh.ensure_consumer(bc.name, pattern)

    async def started(self) -> None:
        """The server's bots are up: their subscriptions are registered, liveness checks begin."""
        await self.mesh.ready()
        self._t0 = time.monotonic()
        self._reaper = asyncio.create_task(self._reap(), name="mesh:reaper")

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception:  # noqa: BLE001 - the connection may be gone
                pass
        if self.data is not None:
            await self.data.stop()

    def _before_publish(self, msg: Any) -> None:
        if isinstance(msg, UserTurn):
            self.grants.give(msg.conversation, {msg.user_id})

    # -- workers ---------------------------------------------------------------------
    async def _on_join(self, m: Any) -> None:
        try:
            req = json.loads(m.data)
            bots = [str(b) for b in req.get("bots", [])]
            self.registry.check(bots, req.get("proto"))
            # the worker is registered by its first heartbeat, sent once its bots are subscribed
            config = self.swarm.config.model_dump(mode="json", exclude={"mesh"})
            log.info("worker %s asked to join with %s", req["worker"], ", ".join(bots))
            body, headers = dumps({"ok": True, "config": config, "heartbeat": self.cfg.heartbeat}), {}
        except ShoalError as exc:
            log.warning("refused a worker: %s", exc.message)
            body, headers = wire.error_body(exc), {wire.KIND: "x"}
        except Exception as exc:  # noqa: BLE001 - a malformed join is refused, the server lives on
            body, headers = wire.error_body(exc), {wire.KIND: "x"}
        if m.reply:
            await self.mesh.nc.publish(m.reply, body, headers=headers)

    async def _on_heartbeat(self, m: Any) -> None:
        try:
            req = json.loads(m.data)
        except ValueError:
            return
        if self.registry.beat(str(req.get("worker"))):
            return
        # a worker the server does not know yet: it just joined (or the server restarted while it ran on)
        bots = [str(b) for b in req.get("bots", [])]
        try:
            self.registry.check(bots, req.get("proto"))
        except ShoalError:
            return
        async with self._lock:
            for b in self.registry.join(str(req["worker"]), bots, str(req.get("host", "")), int(req.get("pid", 0))):
                await self._bot_up(b)

    async def _on_leave(self, m: Any) -> None:
        try:
            worker = str(json.loads(m.data).get("worker"))
        except ValueError:
            return
        async with self._lock:
            for b in self.registry.leave(worker):
                await self._bot_down(b)

    async def _on_status(self, m: Any) -> None:
        snap = self.registry.snapshot()
        snap["bots"] = {b.name: self.placement(b.name) for b in self.swarm.config.bots}
        if m.reply:
            await self.mesh.nc.publish(m.reply, dumps(snap))

    async def _reap(self) -> None:
        grace = self.cfg.heartbeat * self.cfg.missed
        tick = self.cfg.heartbeat / 2
        offline = False
        while True:
            t = time.monotonic()
            await asyncio.sleep(tick)
            if time.monotonic() - t > tick + self.cfg.heartbeat:
                # this loop was held up: heartbeats that arrived meanwhile are not handled yet,
                # so silence now proves nothing — look again next tick
                continue
            if not self.mesh.nc.is_connected:
                offline = True  # NATS is away: no heartbeat can arrive, from live workers either
                continue
            if offline:
                # back: every worker gets a whole grace to be heard again before it counts as dead
                offline = False
                self.registry.excuse()
                self._t0 = time.monotonic()
                continue
            async with self._lock:
                down = self.registry.reap()
                if time.monotonic() - self._t0 > grace:
                    # remote bots no worker ever brought: missing (or run here) once the grace is over
                    known = {b.name for b in self.swarm.config.bots if b.enabled}
                    for name in self.cfg.remote:
                        if name in known and name not in self.registry.lost and not self.registry.alive(name) \
                                and name not in self.swarm.bots:
                            log.warning("no worker runs bot %s (start `shoal worker --bots %s`)", name, name)
                            self.registry.lost.add(name)
                            down.append(name)
                for b in down:
                    try:
                        await self._bot_down(b)
                    except Exception:  # noqa: BLE001 - the reaper must live on
                        log.exception("handling the loss of %s failed", b)

    async def _bot_up(self, name: str) -> None:
        """A worker runs ``name`` now: the server's own copy (fallback or handover) stops."""
        bot = self.swarm.bots.pop(name, None)
        self.fallback_running.discard(name)
        if bot is not None:
            await bot.stop()
            log.info("bot %s now runs in a worker; the server's copy stopped", name)

    async def _bot_down(self, name: str) -> None:
        """The last worker of ``name`` is gone: fall back, and let the primary stop waiting for it."""
        log.warning("bot %s has no live worker", name)
        try:
            bc = self.swarm.config.bot(name)
        except ShoalError:
            return
        if self.cfg.fallback == "inprocess" and name not in self.swarm.bots and bc.enabled and self.swarm.started:
            self.fallback_running.add(name)
            bot = self.swarm._make_bot(bc)
            self.swarm.bots[name] = bot
            await bot.start()
            log.warning("bot %s runs in the server until a worker is back (fallback = inprocess)", name)
        for bot in list(self.swarm.bots.values()):
            hook = getattr(bot, "on_bot_down", None)
            if hook is not None:
                await hook(name)
        await self._end_orphaned_thoughts(name)

    async def _end_orphaned_thoughts(self, name: str) -> None:
        """Thoughts the dead workers were streaming end as errors (in the store and in the headspace)."""
        from shoal.runtime.messages import ThoughtEnd

        rows = await self.swarm.db.read(
            lambda c: c.execute("SELECT * FROM thoughts WHERE bot = ? AND status = 'thinking'", (name,)).fetchall()
        )
        for r in rows:
            await self.swarm.conversations.save_thought(
                r["id"], r["conversation_id"], bot=name, turn_id=r["turn_id"], text=r["text"] or "", status="error",
                started_at=r["started_at"], ended_at=time.time(),
            )
            ev = ThoughtEnd(
                conversation=r["conversation_id"], turn=r["turn_id"], thought_id=r["id"], text=r["text"] or "",
                status="error", error="the worker running it stopped", bot=name,
            )
            await self.mesh.publish(ev.subject, ev)


def placement(swarm: Any, name: str) -> dict[str, Any]:
    """Where a bot runs and whether it is alive (for ``/api/bots`` and ``shoal bots list``)."""
    host = getattr(swarm, "host", None)
    if host is None:
        return {"mesh": "inprocess", "runs_on": ["server"] if name in swarm.bots else [], "alive": name in swarm.bots}
    return host.placement(name)  # type: ignore[no-any-return]
