"""Liveness: workers announce themselves, heartbeat, and are dead after ``missed`` silent heartbeats.

Subjects (all core NATS, answered by the server's host):

* ``shoal.workers.join`` — request ``{worker, bots, proto, host, pid}``; the
  answer is the server's config (bots, routing, memory; never ``[mesh]``
  credentials) or a refusal naming what is wrong (unknown bots, a role that
  cannot run in a worker, another protocol version);
* ``shoal.workers.heartbeat`` — ``{worker, bots}`` every ``heartbeat`` s; a
  heartbeat from a worker the server does not know (the server restarted)
  is taken as a join;
* ``shoal.workers.leave`` — a worker stopping cleanly;
* ``shoal.workers.status`` — request: where each bot runs, and whether it is alive.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from shoal.errors import BadInput, NotFound
from shoal.runtime.messages import PROTOCOL_VERSION

JOIN = "shoal.workers.join"
HEARTBEAT = "shoal.workers.heartbeat"
LEAVE = "shoal.workers.leave"
STATUS = "shoal.workers.status"


@dataclass
class WorkerInfo:
    id: str
    bots: list[str]
    host: str = ""
    pid: int = 0
    joined: float = field(default_factory=time.time)
    seen: float = field(default_factory=time.monotonic)

    def view(self, now: float) -> dict[str, Any]:
        return {"worker": self.id, "bots": self.bots, "host": self.host, "pid": self.pid,
                "seconds_since_heartbeat": round(now - self.seen, 2)}


class Registry:
    """The server's view of its workers: who runs which bot, and who stopped heartbeating."""

    def __init__(
        self, config: Any, *, heartbeat: float, missed: int,
        on_up: Callable[[str], Any] | None = None, on_down: Callable[[str], Any] | None = None,
        allowed_roles: frozenset[str] = frozenset(),
    ) -> None:
        self.config = config
        self.heartbeat = heartbeat
        self.missed = missed
        self.workers: dict[str, WorkerInfo] = {}
        self.on_up = on_up
        self.on_down = on_down
        self.allowed_roles = allowed_roles
        #: bots whose last worker died (until one comes back)
        self.lost: set[str] = set()

    def check(self, bots: list[str], proto: Any) -> None:
        """Refuse a worker that cannot join, with the reason."""
        if proto != PROTOCOL_VERSION:
            raise BadInput(
                f"this worker speaks mesh protocol {proto}; the server speaks {PROTOCOL_VERSION}",
                hint="run the same shoal version on the server and every worker",
            )
        if not bots:
            raise BadInput("a worker must run at least one bot", hint="shoal worker --bots thinker,memory")
        names = {b.name: b for b in self.config.bots}
        unknown = [b for b in bots if b not in names]
        if unknown:
            raise NotFound(
                f"bots not in the server's config: {', '.join(unknown)}",
                hint=f"the server's bots: {', '.join(sorted(names))}",
            )
        wrong = [f"{b} ({names[b].role})" for b in bots if names[b].role not in self.allowed_roles]
        if wrong:
            raise BadInput(
                f"these bots cannot run in a worker: {', '.join(wrong)}",
                hint=f"roles that can: {', '.join(sorted(self.allowed_roles))}",
            )
        disabled = [b for b in bots if not names[b].enabled]
        if disabled:
            raise BadInput(f"these bots are disabled on the server: {', '.join(disabled)}")

    def alive(self, bot: str) -> list[WorkerInfo]:
        return [w for w in self.workers.values() if bot in w.bots]

    def join(self, worker: str, bots: list[str], host: str = "", pid: int = 0) -> list[str]:
        """Register (or refresh) a worker; returns the bots that came up with it."""
        before = {b for w in self.workers.values() for b in w.bots}
        self.workers[worker] = WorkerInfo(worker, list(bots), host, pid)
        up = [b for b in bots if b not in before]
        for b in up:
            self.lost.discard(b)
        return up

    def beat(self, worker: str) -> bool:
        w = self.workers.get(worker)
        if w is None:
            return False
        w.seen = time.monotonic()
        return True

    def excuse(self) -> None:
        """The server could not hear anyone for a while (NATS was away): count silence from now."""
        now = time.monotonic()
        for w in self.workers.values():
            w.seen = now

    def leave(self, worker: str) -> list[str]:
        """Drop a worker; returns the bots that now have none."""
        w = self.workers.pop(worker, None)
        if w is None:
            return []
        down = [b for b in w.bots if not self.alive(b)]
        self.lost.update(down)
        return down

    def reap(self) -> list[str]:
        """Workers silent for ``missed`` heartbeats are dead; returns the bots that now have none."""
        limit = self.heartbeat * self.missed
        now = time.monotonic()
        down: list[str] = []
        for wid in [wid for wid, w in self.workers.items() if now - w.seen > limit]:
            down += self.leave(wid)
        return down

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "workers": [w.view(now) for w in self.workers.values()],
            "lost": sorted(self.lost),
            "heartbeat": self.heartbeat,
            "missed": self.missed,
        }


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def runs_on(config: Any, *, timeout: float = 2.0) -> dict[str, str]:
    """Where each bot runs, for ``shoal bots list``: asked of the running server over NATS ([mesh] kind = "nats")."""
    if config.mesh.kind != "nats":
        return {b.name: "server" for b in config.bots}
    import asyncio

    async def ask() -> dict[str, Any]:
        from shoal.runtime.nats_mesh import connect

        nc = await connect(config.mesh, "shoal-cli")
        try:
            reply = await nc.request(STATUS, b"{}", timeout=timeout)
            return json.loads(reply.data)["bots"]  # type: ignore[no-any-return]
        finally:
            await nc.close()

    try:
        bots = asyncio.run(ask())
    except Exception as exc:  # noqa: BLE001 - the list of bots is still worth showing
        return {b.name: f"unknown (no server on NATS: {type(exc).__name__})" for b in config.bots}
    out = {}
    for name, p in bots.items():
        state = "alive" if p.get("alive") else ("missing" if p.get("missing") else "not running")
        out[name] = f"{', '.join(p.get('runs_on') or ['nowhere'])} · {state}"
    return out
