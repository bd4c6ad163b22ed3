"""The hub's side of sync: consume node journals from JetStream into shoal.db.

Runs inside ``shoal up`` when ``[edge.hub] enabled = true`` (server/nodes_api.py
starts it), or alone as ``shoal edge hub``. It owns the stream (work-queue
retention: a batch leaves the stream once committed here; ``max_bytes`` with
discard-new is the backpressure when the hub falls behind or is away), a
durable pull consumer (``shoal-hub``), and answers nodes' hellos.

Each fetch of up to ``hub.fetch`` batches is decoded off the event loop,
committed in one transaction, and only then acknowledged to the stream and
to each node (``<p>.<node>.ack``): a crash in between redelivers batches the
database already holds, which ``PRIMARY KEY (node, seq)`` ignores. A batch
that cannot be stored (disk full) is not acknowledged and comes back; a
corrupt one is terminated and its range pulled again. When a node lags with
nothing in flight (the stream lost data, or the node missed a window), the
hub asks it for the range it lacks (``<p>.<node>.pull``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from shoal.edge.config import EdgeConfig
from shoal.edge.hubstore import HubStore
from shoal.edge.journal import is_disk_full
from shoal.edge.sync import Lost, nats_options, quiet_callback, sleep_or_stop
from shoal.edge.wire import Batch, WireError, decode
from shoal.store.db import Database

log = logging.getLogger(__name__)

CONSUMER = "shoal-hub"
#: seconds before the stream hands a batch that was not acknowledged to the hub again
ACK_WAIT = 10.0


@dataclass
class HubStatus:
    state: str = "starting"  # starting | connecting | running | offline | error
    url: str = ""
    last_error: str | None = None
    hint: str | None = None
    batches: int = 0
    entries: int = 0
    duplicates: int = 0
    corrupt: int = 0
    rejected: int = 0
    pulls: int = 0
    stream_messages: int | None = None
    stream_bytes: int | None = None
    started: float = 0.0


class EdgeHub:
    def __init__(self, db: Database, config: EdgeConfig) -> None:
        self.config = config
        self.store = HubStore(db)
        self.prefix = config.subject
        self.status = HubStatus(url=config.hub_nats, started=time.time())
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._nc: Any = None

    async def start(self) -> None:
        if not self.config.hub_nats:
            from shoal.errors import ConfigError

            raise ConfigError("[edge.hub] is enabled but no NATS server is set", field="edge.hub.nats",
                              hint='set edge.hub.nats = "nats://127.0.0.1:4222" (a nats-server started with -js)')
        await self.store.load()
        self._stop.clear()
        self._task = asyncio.create_task(self._run(), name="edge-hub")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=15)
            except asyncio.TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        import nats

        delay = 1.0
        while not self._stop.is_set():
            self.status.state = "connecting"
            lost = Lost()
            try:
                nc = await nats.connect(**nats_options(self.config.hub_nats, self.config.nats_token_env, "shoal-hub"),
                                        error_cb=quiet_callback, disconnected_cb=lost.set, closed_cb=lost.set)
            except Exception as exc:
                self._trouble(f"cannot reach NATS at {self.config.hub_nats}: {type(exc).__name__}: {exc}",
                              "start nats-server with JetStream (-js) there, or fix edge.hub.nats")
                if await sleep_or_stop(self._stop, delay):
                    break
                delay = min(delay * 2, 30.0)
                continue
            delay = 1.0
            self._nc = nc
            self._lost = lost
            try:
                await self._session(nc)
            except Exception as exc:
                self._trouble(f"the hub's NATS session ended: {type(exc).__name__}: {exc}", None)
                log.debug("hub session failed", exc_info=True)
            finally:
                self._nc = None
                try:
                    await nc.close()
                except Exception:
                    pass
            if await sleep_or_stop(self._stop, 1.0):
                break
        self.status.state = "offline"

    def _trouble(self, why: str, hint: str | None) -> None:
        if why != self.status.last_error:
            log.warning("edge hub: %s", why)
        self.status.state, self.status.last_error, self.status.hint = "offline", why, hint

    async def _session(self, nc: Any) -> None:
        js = nc.jetstream(timeout=10)
        await self._ensure_stream(js)
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        psub = await js.pull_subscribe(
            f"{self.prefix}.*.batch", durable=CONSUMER, stream=self.config.stream,
            # a batch handed to a hub that died is redelivered after ack_wait: short, and kept
            # alive with in_progress() while a long commit runs
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT, max_deliver=-1,
                                  max_ack_pending=max(64, self.config.hub.fetch * 4), deliver_policy=DeliverPolicy.ALL),
        )
        hello = await nc.subscribe(f"{self.prefix}.hub.hello", cb=self._on_hello)
        self.status.state, self.status.last_error, self.status.hint = "running", None, None
        checker = asyncio.create_task(self._pull_lagging(nc, psub), name="edge-hub:pull")
        try:
            await self._consume(nc, psub)
        finally:
            checker.cancel()
            await asyncio.gather(checker, return_exceptions=True)
            for s in (hello, psub):
                try:
                    await s.unsubscribe()
                except Exception:
                    pass

    async def _ensure_stream(self, js: Any) -> None:
        import nats.js.errors
        from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

        cfg = StreamConfig(
            name=self.config.stream, subjects=[f"{self.prefix}.*.batch"], retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE, max_bytes=self.config.hub.max_stream_mb << 20, discard=DiscardPolicy.NEW,
            duplicate_window=120,
        )
        try:
            await js.add_stream(cfg)
        except nats.js.errors.BadRequestError:
            await js.update_stream(cfg)

    async def _consume(self, nc: Any, psub: Any) -> None:
        import nats.errors

        while not self._stop.is_set():
            self._lost.check(self.config.hub_nats)
            try:
                msgs = await psub.fetch(self.config.hub.fetch, timeout=1)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                continue
            await self._handle(nc, msgs)

    async def _handle(self, nc: Any, msgs: list[Any]) -> None:
        decoded = await asyncio.to_thread(_decode_all, [m.data for m in msgs])
        good = [(m, b) for m, b in zip(msgs, decoded) if isinstance(b, Batch)]
        for m, b in zip(msgs, decoded):
            if not isinstance(b, Batch):
                self.status.corrupt += 1
                log.warning("edge hub: dropped an undecodable batch on %s: %s (the range is pulled again)", m.subject, b)
                await m.term()
        if not good:
            return
        keepalive = asyncio.create_task(_keep_alive([m for m, _ in good]))
        try:
            results = await self.store.ingest([b for _, b in good])
        except Exception as exc:
            if is_disk_full(exc):
                self._trouble("the hub's disk is full: batches stay in the stream until there is room",
                              "free space on the disk holding SHOAL_HOME; nothing is lost")
            else:
                self._trouble(f"cannot store batches: {type(exc).__name__}: {exc}", None)
                log.exception("edge hub: ingest failed")
            for m, _ in good:
                await m.nak(delay=5)
            await sleep_or_stop(self._stop, 2.0)
            return
        finally:
            keepalive.cancel()
            await asyncio.gather(keepalive, return_exceptions=True)
        if self.status.state != "running":
            self.status.state, self.status.last_error, self.status.hint = "running", None, None
        for m, b in good:
            res = results.get(b.node, {})
            if res.get("rejected") and "contig" not in res:
                await m.term()  # a node the hub refuses (another journal under the same name)
            else:
                await m.ack()
        self.status.batches += len(good)
        for name, res in results.items():
            self.status.entries += res["inserted"]
            self.status.duplicates += res["duplicates"]
            self.status.rejected += res["rejected"]
            if "contig" in res:
                ack = {"contig": res["contig"], "holes": self.store.holes(name)[:4], "hub_ms": int(time.time() * 1000)}
                await nc.publish(f"{self.prefix}.{name}.ack", json.dumps(ack).encode())

    async def _on_hello(self, msg: Any) -> None:
        try:
            rep = await self.store.hello(json.loads(msg.data))
        except (ValueError, TypeError) as exc:
            rep = {"ok": False, "error": f"bad hello: {exc}", "hint": "upgrade shoal on the node"}
        except Exception as exc:
            log.exception("edge hub: hello failed")
            rep = {"ok": False, "error": f"the hub failed: {type(exc).__name__}", "hint": "see the hub's log"}
        if msg.reply:
            await msg.respond(json.dumps(rep).encode())

    async def _pull_lagging(self, nc: Any, psub: Any) -> None:
        """Ask a node for what the hub lacks when nothing of it is on the way."""
        import nats.errors

        every = max(1.0, self.config.hub.pull_after / 2)
        while not self._stop.is_set():
            if await sleep_or_stop(self._stop, every):
                return
            try:
                info = await psub.consumer_info()
                self.status.stream_messages = info.num_pending
                if info.num_pending or info.num_ack_pending:
                    continue
            except Exception:
                continue
            now = time.time()
            for node in self.store.known():
                holes = self.store.holes(node.name)
                quiet = now - max(node.last_batch or 0, node.first_seen) > self.config.hub.pull_after
                alive = now - max(node.last_seen or 0, node.last_batch or 0) < 120
                if not holes or not quiet or not alive:
                    continue
                try:
                    await nc.request(f"{self.prefix}.{node.name}.pull",
                                     json.dumps({"from": holes[0][0], "to": holes[0][1]}).encode(), timeout=2)
                    self.status.pulls += 1
                    log.info("edge hub: asked %s for %d-%d", node.name, holes[0][0], holes[0][1])
                except (nats.errors.NoRespondersError, nats.errors.TimeoutError, asyncio.TimeoutError):
                    pass

    def snapshot(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self.status)


async def _keep_alive(msgs: list[Any]) -> None:
    """Tell the stream these batches are still being worked on (a commit can outlast ack_wait on a slow disk)."""
    while True:
        await asyncio.sleep(ACK_WAIT / 2)
        for m in msgs:
            try:
                await m.in_progress()
            except Exception:
                return


def _decode_all(datas: list[bytes]) -> list[Batch | str]:
    out: list[Batch | str] = []
    for d in datas:
        try:
            out.append(decode(d))
        except WireError as exc:
            out.append(str(exc))
    return out
