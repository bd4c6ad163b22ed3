"""The node's side of sync: send the journal to the hub over NATS JetStream, resumably, with backpressure.

Protocol (subjects under ``edge.subject``, default ``shoal.edge``; docs/edge.md):

- ``<p>.hub.hello`` — request: the node's name, identity (uid), head, oldest
  seq and wall clock. The hub answers with what it holds (``contig``: every
  seq up to it is stored; ``holes`` beyond it) and its own clock. The node
  sends from ``contig + 1``: resumable from the last *acknowledged* entry,
  whatever either side lost or missed.
- ``<p>.<node>.batch`` — JetStream: batches (wire.py), up to ``window`` awaiting
  the stream's ack at once, deterministic ranges and ``Nats-Msg-Id``.
- ``<p>.<node>.ack`` — the hub, after each commit: its new ``contig``. Only
  this moves ``acked``, which retention honours; the stream's own ack only
  says the stream has it.
- ``<p>.<node>.pull`` — the hub asks for a range it lacks (after the stream
  lost something, or either side was offline); the node re-sends from there.

Backpressure: at most ``max_unacked`` entries may be sent and not yet
committed by the hub; the stream's ``max_bytes`` (discard new) refuses more
when the hub is away for long, and the node waits and retries. Without a hub
answering, the node still fills the stream (it holds the entries durably)
up to that bound.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from shoal.edge.config import EdgeConfig
from shoal.edge.hlc import pack
from shoal.edge.journal import CLOCK, Journal, NewEntry
from shoal.edge.wire import chunk_end, encode, msg_id
from shoal.errors import DiskFull

log = logging.getLogger(__name__)

#: the hub's clock is folded into the node's HLC only when it is at most this far ahead (ms):
#: a hub clock set years ahead would otherwise drag every later timestamp with it
MAX_FOLD_MS = 7 * 86_400_000
HEARTBEAT = 30.0


@dataclass
class SyncStatus:
    state: str = "starting"  # starting | connecting | syncing | caught up | waiting for hub | offline | error
    connected: bool = False
    hub_answering: bool = False
    last_sync: float | None = None
    last_error: str | None = None
    hint: str | None = None
    offset_ms: int | None = None
    sent_batches: int = 0
    sent_entries: int = 0
    sent_bytes: int = 0
    waits: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def nats_options(url: str, token_env: str, name: str) -> dict[str, Any]:
    import os

    # no reconnecting inside the client: requests in flight would hang until their timeouts. A lost
    # connection ends the session at once, and the caller's loop connects afresh (with backoff)
    opts: dict[str, Any] = {
        # (nats-py retries the first connect max_reconnect_attempts times even so: 1 = fail in ~0.5 s)
        "servers": [url], "name": name, "allow_reconnect": False, "max_reconnect_attempts": 1,
        "reconnect_time_wait": 0.5, "connect_timeout": 3, "ping_interval": 5, "max_outstanding_pings": 2,
    }
    if token_env:
        token = os.environ.get(token_env)
        if not token:
            from shoal.errors import ConfigError

            raise ConfigError(f"edge.nats_token_env names {token_env!r}, which is not set", hint=f"export {token_env}=…")
        opts["token"] = token
    return opts


async def quiet_callback(*_: Any) -> None:
    """nats-py callbacks: the sync loop reports connection trouble itself."""


class Lost:
    """Set when a NATS connection drops; waits elsewhere give up at once instead of timing out."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def set(self, *_: Any) -> None:
        """The nats-py callback (it must be a coroutine function)."""
        self.event.set()

    def check(self, url: str) -> None:
        if self.event.is_set():
            raise ConnectionError(f"lost the connection to {url}")


class EdgeSync:
    """Keeps the hub up to date with the journal; ``run`` until ``stop`` is set."""

    def __init__(self, journal: Journal, config: EdgeConfig) -> None:
        self.journal = journal
        self.config = config
        self.node = journal.node
        self.prefix = config.subject
        self.status = SyncStatus()
        self._wake = asyncio.Event()
        self._acked = asyncio.Event()
        self._pull_from: int | None = None
        #: bumped by each pull from the hub; part of the message ids from then on
        self._epoch = 0
        self._hub_contig: int | None = None
        self._persisted = (journal.acked, journal.published)
        self._lost = Lost()

    # -- outside ----------------------------------------------------------------------
    def wake(self) -> None:
        """New entries were appended: send them at the next chance."""
        self._wake.set()

    @property
    def backlog(self) -> int:
        return max(0, self.journal.head - self.journal.acked)

    async def run(self, stop: asyncio.Event, *, until_caught_up: bool = False) -> bool:
        """Connect, sync, reconnect with backoff until ``stop`` (or, with ``until_caught_up``, until
        the hub has every entry that existed when it started). Returns whether it caught up."""
        import nats

        target = self.journal.head if until_caught_up else None
        delay = 1.0
        while not stop.is_set():
            if self.status.state not in ("offline", "error"):  # a failure stays on show until a session works
                self.status.state = "connecting"
            self._lost = lost = Lost()
            try:
                nc = await nats.connect(
                    **nats_options(self.config.nats, self.config.nats_token_env, f"shoal-edge-{self.node}"),
                    error_cb=quiet_callback, disconnected_cb=lost.set, closed_cb=lost.set,
                )
            except Exception as exc:  # nats raises OSError, TimeoutError, NoServersError...
                self._offline(f"cannot reach the hub's NATS server at {self.config.nats} ({type(exc).__name__})")
                if await sleep_or_stop(stop, delay):
                    break
                delay = min(delay * 2, 30.0)
                continue
            delay = 1.0
            self.status.connected = True
            try:
                done = await self._session(nc, stop, target)
                if done:
                    await self._persist(force=True)
                    return True
            except PermissionError:
                # the hub refused this node (said why at hello, logged once): it needs a person,
                # so ask again only now and then
                delay = 60.0
            except Exception as exc:
                self._offline(f"sync interrupted: {type(exc).__name__}: {exc}")
                log.debug("sync session failed", exc_info=True)
            finally:
                self.status.connected = False
                try:
                    await nc.close()
                except Exception:
                    pass
            await self._persist(force=True)
            if await sleep_or_stop(stop, 1.0 if self.status.state != "error" else delay):
                break
        self.status.state = "offline"
        await self._persist(force=True)
        return target is not None and self.journal.acked >= target

    def _offline(self, why: str) -> None:
        if self.status.last_error != why:
            log.warning("%s (the node keeps everything and retries)", why)
        self.status.state, self.status.last_error = "offline", why
        self.status.hint = "the node keeps recording; it syncs by itself when the hub is reachable"

    # -- one connection ------------------------------------------------------------------
    async def _session(self, nc: Any, stop: asyncio.Event, target: int | None) -> bool:
        import nats.errors
        import nats.js.errors

        js = nc.jetstream(timeout=10)
        subs = [
            await nc.subscribe(f"{self.prefix}.{self.node}.ack", cb=self._on_ack),
            await nc.subscribe(f"{self.prefix}.{self.node}.pull", cb=self._on_pull),
        ]
        try:
            j = self.journal
            hello = await self._hello(nc)
            cursor = (hello + 1) if hello is not None else (max(j.published, j.acked) + 1)
            # a hub that did not answer is asked again soon: it tells us what it lacks
            next_hello = time.monotonic() + (HEARTBEAT if hello is not None else 5.0)
            inflight: list[tuple[int, int, Any]] = []  # (first, last, future)
            max_payload = max(64 * 1024, int(getattr(nc, "max_payload", 1 << 20)) - 4096)
            while not stop.is_set():
                self._lost.check(self.config.nats)
                if target is not None and j.acked >= target:
                    self.status.state = "caught up"
                    return True
                if time.monotonic() >= next_hello:
                    before = j.acked
                    contig = await self._hello(nc)
                    next_hello = time.monotonic() + (HEARTBEAT if contig is not None else 5.0)
                    if contig is not None and contig < before:
                        cursor = min(cursor, contig + 1)  # the hub lost what it had acknowledged: send it again
                if self._pull_from is not None:
                    cursor = min(cursor, self._pull_from)
                    self._pull_from = None
                # cleared before looking, so an ack or pull that lands meanwhile is not missed
                self._wake.clear()
                self._acked.clear()
                if cursor > j.head or cursor - 1 - j.acked >= self.config.max_unacked:
                    waiting = cursor <= j.head
                    self.status.state = "waiting for hub" if waiting else ("caught up" if j.acked >= j.head else "syncing")
                    if waiting:
                        self.status.waits += 1
                    failed = await self._drain(inflight)
                    if failed is not None:  # the stream did not take it: send again from there
                        cursor = min(cursor, failed)
                        await sleep_or_stop(stop, 2.0)
                        continue
                    await self._persist()
                    if target is not None and j.acked >= target:
                        continue
                    if waiting:  # until the hub commits something (or 5 s, then look again)
                        await _first(stop, self._acked, self._wake, self._lost.event, timeout=5.0)
                    else:  # caught up: new entries go out together every sync_interval
                        await _first(stop, self._wake, self._acked if j.acked < j.head else stop, self._lost.event,
                                     timeout=self.config.sync_interval)
                    continue
                self.status.state = "syncing"
                last = min(j.head, chunk_end(cursor, self.config.batch), j.acked + self.config.max_unacked)
                for first, end, data in await self._encode(cursor, last, max_payload):
                    try:
                        fut = await js.publish_async(
                            f"{self.prefix}.{self.node}.batch", data, wait_stall=30,
                            headers={"Nats-Msg-Id": msg_id(j.uid, first, end) + (f":{self._epoch}" if self._epoch else ""),
                                     "Shoal-Node": self.node, "Shoal-Uid": j.uid},
                        )
                    except nats.js.errors.TooManyStalledMsgsError:
                        raise TimeoutError("the stream stopped acknowledging") from None
                    inflight.append((first, end, fut))
                    self.status.sent_bytes += len(data)
                cursor = last + 1
                while len(inflight) >= self.config.window:
                    failed = await self._settle(inflight.pop(0))
                    if failed is not None:
                        await self._drain(inflight)
                        cursor = failed
                        await sleep_or_stop(stop, 2.0)
                        break
            return False
        finally:
            for s in subs:
                try:
                    await s.unsubscribe()
                except Exception:
                    pass

    async def _encode(self, first: int, last: int, max_payload: int) -> list[tuple[int, int, bytes]]:
        """The range as one message, or halves when it is too big for the server's max payload."""
        rows = await self.journal.rows(first, last)
        data = await asyncio.to_thread(encode, self.node, self.journal.uid, first, last, rows)
        if len(data) <= max_payload or first == last:
            return [(first, last, data)]
        mid = (first + last) // 2
        return await self._encode(first, mid, max_payload) + await self._encode(mid + 1, last, max_payload)

    async def _settle(self, item: tuple[int, int, Any]) -> int | None:
        """Await one publish; None when the stream stored it, else the seq to resend from."""
        import nats.js.errors

        first, last, fut = item
        try:
            lost = asyncio.ensure_future(self._lost.event.wait())
            try:
                done, _ = await asyncio.wait({fut, lost}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            finally:
                lost.cancel()
            if fut not in done:
                self._lost.check(self.config.nats)
                raise asyncio.TimeoutError
            fut.result()
        except nats.js.errors.NoStreamResponseError:
            why = f"no JetStream stream takes {self.prefix}.{self.node}.batch"
            if self.status.last_error != why:
                log.warning("%s; start the hub (`shoal up` with [edge.hub] enabled) once: it creates the stream", why)
            self.status.last_error = why
            self.status.hint = "start the hub (`shoal up` with [edge.hub] enabled) once: it creates the stream"
            return first
        except nats.js.errors.APIError as exc:
            # typically the stream is full (the hub has been away): wait, the hub drains it
            why = f"the stream refused a batch: {exc.description or exc}"
            if self.status.last_error != why:
                log.info("%s", why)
            self.status.last_error = why
            self.status.hint = "the hub is behind or away; the node waits and resends"
            self.status.waits += 1
            return first
        except asyncio.TimeoutError:
            raise TimeoutError("no ack from the stream within 30 s") from None
        self.status.sent_batches += 1
        self.status.sent_entries += last - first + 1
        if self.status.last_error and self.status.last_error.startswith(("no JetStream", "the stream refused")):
            self.status.last_error = self.status.hint = None
        if last > self.journal.published:
            self.journal.published = last
        return None

    async def _drain(self, inflight: list[tuple[int, int, Any]]) -> int | None:
        """Await every publish in flight; the first seq to send again, or None when all were stored."""
        failed: int | None = None
        while inflight:
            f = await self._settle(inflight.pop(0))
            if f is not None and failed is None:
                failed = f
        return failed

    async def _hello(self, nc: Any) -> int | None:
        """Tell the hub who we are; returns its contig, or None when no hub answers."""
        import nats.errors

        j = self.journal
        sent = j.wall_ms()
        req = {
            "node": self.node, "uid": j.uid, "head": j.head, "first": await j.oldest(), "wall_ms": sent,
            "hlc": j.clock.last, "site": self.config.site, "location": self.config.location, "v": 1,
        }
        try:
            msg = await nc.request(f"{self.prefix}.hub.hello", json.dumps(req).encode(), timeout=5)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError, asyncio.TimeoutError):
            self.status.hub_answering = False
            self.status.hint = "the hub is not answering; entries wait in the stream (bounded) and on this node"
            return None
        got = j.wall_ms()
        rep = json.loads(msg.data)
        self.status.hub_answering = True
        if not rep.get("ok"):
            why = rep.get("error") or "the hub refused this node"
            if why != self.status.last_error:
                log.error("the hub refused node %s: %s (%s)", self.node, why, rep.get("hint"))
            self.status.state, self.status.last_error, self.status.hint = "error", why, rep.get("hint")
            raise PermissionError(why)
        self.status.last_error = self.status.hint = None
        contig = int(rep["contig"])
        self._hub_contig = contig
        if contig != j.acked:
            # lower too: a hub restored from an older backup asks for the rest again
            j.acked = contig
            self._acked.set()
        await self._clock(int(rep["hub_ms"]), sent, got)
        self.status.last_sync = time.time()
        return contig

    async def _clock(self, hub_ms: int, sent: int, got: int) -> None:
        """Keep the hub's offset; fold its clock into the HLC when ours is behind (bounded)."""
        j = self.journal
        offset = hub_ms - (sent + got) // 2
        previous = self.status.offset_ms
        self.status.offset_ms = offset
        if 0 < offset <= MAX_FOLD_MS:
            j.clock.update(pack(hub_ms))
        elif offset > MAX_FOLD_MS:
            log.warning("the hub's clock is %.0f s ahead of this node: not followed (check both clocks)", offset / 1000)
        try:
            if (previous is None or abs(offset - previous) > 5000) and abs(offset) > 5000:
                text = f"the hub's clock differs from this device's by {offset / 1000:+.1f} s"
                await j.append([NewEntry(CLOCK, j.wall_ms(), body={"offset_ms": offset, "text": text})])
                self.wake()
            await j.set_state(offset_ms=offset)
        except DiskFull:
            # sending what is stored is the way out of a full disk: never let a note about the clock stop it
            log.debug("clock offset not recorded: the disk is full")

    # -- callbacks from the hub ---------------------------------------------------------------
    async def _on_ack(self, msg: Any) -> None:
        try:
            rep = json.loads(msg.data)
            contig = int(rep["contig"])
        except (ValueError, KeyError, TypeError):
            return
        log.debug("hub ack: contig %d (acked %d)", contig, self.journal.acked)
        if contig > self.journal.acked:
            self.journal.acked = contig
            self.status.last_sync = time.time()
        self._acked.set()

    async def _on_pull(self, msg: Any) -> None:
        try:
            req = json.loads(msg.data)
            start = max(1, int(req["from"]))
        except (ValueError, KeyError, TypeError):
            return
        self._pull_from = start if self._pull_from is None else min(self._pull_from, start)
        # the hub has not got it and nothing of it is on the way: the stream may have lost it inside
        # its duplicate window, where the same message id would be dropped again — so new ids
        self._epoch += 1
        self._wake.set()
        if msg.reply:
            await msg.respond(json.dumps({"ok": True, "head": self.journal.head}).encode())

    async def _persist(self, *, force: bool = False) -> None:
        j = self.journal
        now = (j.acked, j.published)
        if now != self._persisted or force:
            values: dict[str, Any] = {"acked": j.acked, "published": j.published}
            if self.status.last_sync:
                values["last_sync"] = self.status.last_sync
            try:
                await j.set_state(**values)
                self._persisted = now
            except Exception as exc:  # a full disk must not stop sync; the next persist retries
                log.warning("could not record sync progress: %s", exc)


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
        return True
    except asyncio.TimeoutError:
        return False


async def _first(*events: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
