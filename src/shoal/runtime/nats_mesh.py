"""The mesh on NATS: the same subjects and contract as ``InProcessMesh``, across processes and machines.

* ``publish`` sends the message's JSON (``nats_wire``) on its subject. The
  subjects that must survive a restart — user turns and routes,
  ``conv.*.user`` and ``conv.*.route`` — are captured by a JetStream stream;
  they are published through JetStream with a ``Nats-Msg-Id`` so a retried
  publish is stored once.
* ``subscribe`` from a bot (its inbox is named ``bot.<name>``) is a queue
  subscription named after the bot, so several instances of one bot share
  the work and each message reaches one of them. On a durable subject it is
  a JetStream durable push consumer (``<bot>-<channel>``, deliver group of
  the same name): what was published while every instance was down is
  delivered when one comes back. A delivered message is acknowledged when
  the bot has *handled* it (its ``Receipt`` settled: the handler returned and
  the work it held the receipt for — a thought, an ingestion — is done);
  meanwhile it is reported in progress every ``ack_wait / 3``. A process
  killed while handling never acknowledges, so JetStream delivers the message
  again (to another instance, or the restarted one) after ``ack_wait``. A
  redelivered message id the subscription is still handling is reported in
  progress, one it has handled is acknowledged, and both are dropped
  (handlers never see a message twice in one process).
  Any other subscriber (the journal, listeners) gets every message, durable
  ones once per message id: a publish JetStream could not confirm while NATS
  was away goes out again as a plain one, and both copies reach them.
* ``serve`` is a queue subscription too (group ``shoal``): one instance
  answers each request. Handlers run as tasks, so a slow answer does not
  hold up the next request.
* ``request`` raises ``NotFound`` at once when nobody serves the subject and
  ``asyncio.TimeoutError`` after ``timeout`` — like the in-process mesh. A
  request the host says this process can answer itself (``answer_here``: a
  bot running here, or a read of a worker's bot from the server's own store)
  is answered without the round trip.

``subscribe`` and ``serve`` are synchronous in the ``Mesh`` protocol; the
subscriptions are made in the background and ``publish``/``request`` wait
for them first, so a process never publishes before its own subscribers are
registered. Call ``await mesh.ready()`` before announcing a process to
others.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

from pydantic import BaseModel

from shoal.errors import BackendUnavailable, NotFound
from shoal.runtime import nats_wire as wire
from shoal.runtime.inbox import Inbox
from shoal.runtime.mesh import Accept, Delivery, Handler, Receipt, subject_matches
from shoal.runtime.mesh_config import MeshConfig
from shoal.runtime.messages import Event

log = logging.getLogger(__name__)

#: subjects kept in the JetStream stream (a restart loses none of them)
DURABLE_SUBJECTS = ("conv.*.user", "conv.*.route")
#: message ids a durable subscription remembers to drop redeliveries
DEDUP_WINDOW = 4096
SERVE_GROUP = "shoal"


def msg_id(msg: BaseModel) -> str | None:
    """A stable id for a durable event: one per (kind, turn, bot, bot_seq) — a republish gets the same one."""
    if not isinstance(msg, Event):
        return None
    return f"{msg.kind}:{msg.conversation}:{msg.turn or ''}:{msg.bot}:{msg.bot_seq}"


def durable_pattern(pattern: str) -> bool:
    return pattern in DURABLE_SUBJECTS


async def connect(config: MeshConfig, name: str) -> Any:
    """A NATS connection, or one clear error naming the URL and how to start a server."""
    import nats
    import nats.errors

    async def _error(exc: Exception) -> None:
        log.debug("nats: %s", exc)

    opts = config.connect_options(name)
    # the first connect must fail fast and clearly; reconnects afterwards are forever
    first = dict(opts, max_reconnect_attempts=1, allow_reconnect=False)  # 0 would mean "forever" to nats-py
    probe = nats.NATS()
    try:
        await probe.connect(**first, error_cb=_error)
    except nats.errors.NoServersError as exc:
        await _discard(probe)
        raise BackendUnavailable(
            f"cannot reach NATS at {config.url} ({_reason(exc)})",
            hint="start one with `nats-server -js` (Debian: apt install nats-server), or set [mesh] url in shoal.toml",
        ) from exc
    except (OSError, asyncio.TimeoutError, nats.errors.Error) as exc:
        await _discard(probe)
        raise BackendUnavailable(
            f"cannot join NATS at {config.url}: {_reason(exc)}",
            hint="check [mesh] user/password/token/nkey_seed/creds/tls_* in shoal.toml against the server's authorization",
        ) from exc
    await probe.close()
    return await nats.connect(**opts, error_cb=_error)


async def _discard(nc: Any) -> None:
    """Close what a failed connect left open (nats-py keeps the transport of a refused attempt)."""
    try:
        await asyncio.wait_for(nc.close(), 2)
    except Exception:  # noqa: BLE001 - it never fully opened
        pass
    transport = getattr(nc, "_transport", None)
    for writer in {getattr(transport, "_io_writer", None), getattr(transport, "_bare_io_writer", None)} - {None}:
        try:
            writer.transport.abort()  # a TLS handshake that failed half-way: nothing left to flush
        except Exception:  # noqa: BLE001
            pass


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    text = str(exc) or type(exc).__name__
    if "authorization" in text.lower() or (cause and "authorization" in str(cause).lower()):
        return "authorization violation: the credentials were refused"
    return text


class _Sub:
    def __init__(self, mesh: "NatsMesh") -> None:
        self.mesh = mesh
        self.nats_sub: Any = None
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.mesh._forget(self)


class _JsReceipt(Receipt):
    """A durable delivery's receipt; ``msg`` is its latest delivery (the one to acknowledge)."""

    def __init__(self, msg: Any, settle: Any, *, redelivered: bool) -> None:
        super().__init__(settle, redelivered=redelivered)
        self.msg = msg


class NatsMesh:
    """The ``Mesh`` protocol on a nats-py connection (see the module docstring)."""

    def __init__(self, config: MeshConfig, *, name: str = "shoal") -> None:
        self.config = config
        self.name = name
        self.nc: Any = None
        self.js: Any = None
        self.durable = False
        self.published = 0
        self.redelivered_dropped = 0
        self._subs: set[_Sub] = set()
        self._pending: set[asyncio.Task[Any]] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        #: durable deliveries being handled (sent +WPI while they are), acks and naks on their way
        self._open: set[_JsReceipt] = set()
        self._acks: set[asyncio.Task[Any]] = set()
        self._progress: asyncio.Task[None] | None = None
        self._ack_wait = float(config.ack_wait)
        self.acked = 0
        self.nakked = 0
        #: called with every message this process publishes, before it leaves (the host gives grants)
        self.before_publish: Any = None
        #: (subject, request) -> a handler of this process that answers it without the hop, or None (set by the host)
        self.answer_here: Any = None
        self.answered_here = 0

    # -- lifecycle ---------------------------------------------------------------
    async def start(self) -> "NatsMesh":
        self.nc = await connect(self.config, self.name)
        if self.config.durable:
            self.js = self.nc.jetstream()
            try:
                await self._ensure_stream()
                self.durable = True
            except Exception as exc:  # noqa: BLE001 - a server without JetStream still carries the mesh
                log.warning(
                    "NATS at %s has no JetStream (%s): user turns and routes are not kept across restarts; "
                    "hint: run nats-server with -js", self.config.url, exc,
                )
                self.js = None
        return self

    async def _ensure_stream(self) -> None:
        from nats.js.api import StorageType, StreamConfig

        cfg = StreamConfig(
            name=self.config.stream, subjects=list(DURABLE_SUBJECTS), storage=StorageType.FILE,
            max_age=7 * 86400, duplicate_window=120,
        )
        try:
            await self.js.add_stream(cfg)
        except Exception:  # noqa: BLE001 - it exists (perhaps with other limits): use it as it is
            await self.js.stream_info(self.config.stream)

    async def ready(self) -> None:
        """Every subscription made so far is registered with the server."""
        while self._pending:
            done = list(self._pending)
            await asyncio.gather(*done, return_exceptions=True)
            self._pending.difference_update(done)
        if self.nc is not None and self.nc.is_connected:
            await self.nc.flush(timeout=5)

    async def close(self) -> None:
        await asyncio.gather(*self._pending, return_exceptions=True)
        for sub in list(self._subs):
            sub.close()
        await asyncio.gather(*self._pending, return_exceptions=True)
        for t in list(self._handlers):
            t.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._progress is not None:
            self._progress.cancel()
            await asyncio.gather(self._progress, return_exceptions=True)
        await asyncio.gather(*self._acks, return_exceptions=True)  # acks and naks go out before the connection closes
        if self.nc is not None and not self.nc.is_closed:
            await self.nc.close()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._subscribed)
        return task

    def _subscribed(self, task: asyncio.Task[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a NATS subscription failed: %s", task.exception())

    def _forget(self, sub: _Sub) -> None:
        self._subs.discard(sub)

        async def _unsub() -> None:
            if sub.nats_sub is not None and self.nc is not None and not self.nc.is_closed:
                try:
                    await sub.nats_sub.unsubscribe()
                except Exception:  # noqa: BLE001 - the connection is going anyway
                    pass

        try:
            self._spawn(_unsub())
        except RuntimeError:  # no running loop: the connection is closed with it
            pass

    # -- publish / subscribe ---------------------------------------------------------
    async def publish(self, subject: str, msg: BaseModel) -> None:
        if self._pending:
            await self.ready()
        if self.before_publish is not None:
            self.before_publish(msg)
        body, headers = wire.encode(msg)
        self.published += 1
        if self.durable and any(subject_matches(p, subject) for p in DURABLE_SUBJECTS):
            mid = msg_id(msg)
            if mid:
                headers[wire.MSG_ID] = mid
            try:
                await self.js.publish(subject, body, headers=headers, timeout=5)
                return
            except Exception as exc:  # noqa: BLE001 - the core publish below still reaches the live subscribers
                log.warning("JetStream did not store %s (%s); sent without it", subject, exc)
        await self.nc.publish(subject, body, headers=headers)

    def subscribe(self, pattern: str, inbox: Inbox[Delivery], accept: Accept | None = None) -> _Sub:
        sub = _Sub(self)
        self._subs.add(sub)
        bot = inbox.name[4:] if inbox.name.startswith("bot.") else None
        #: message ids taken, and for a durable subscription the receipt each one is handled under
        seen: collections.OrderedDict[str, _JsReceipt | None] = collections.OrderedDict()

        async def deliver(m: Any, *, durable: bool) -> None:
            if sub.closed:
                if durable:
                    await self._reply(m.nak)  # another instance takes it now
                return
            headers = m.headers or {}
            mid = headers.get(wire.MSG_ID)
            if mid is not None and mid in seen:
                # a durable message comes again when JetStream redelivers it or when a publish that
                # NATS could not confirm (it was away) was sent once more: handle it once
                self.redelivered_dropped += 1
                if durable:
                    kept = seen[mid]
                    if kept is None or kept.settled:
                        await self._reply(m.ack)
                    else:  # still being handled here: this delivery is the one to acknowledge
                        kept.msg = m
                        await self._reply(m.in_progress)
                return
            try:
                msg = wire.decode(m.data, headers)
            except Exception as exc:  # noqa: BLE001 - a bad message is dropped, never kills the subscription
                log.warning("dropped an unreadable message on %s: %s", m.subject, exc)
                if durable:
                    await self._reply(m.term)
                return
            receipt = self._receipt(m, mid, seen) if durable else None
            if mid is not None:
                seen[mid] = receipt
                if len(seen) > DEDUP_WINDOW:
                    seen.popitem(last=False)
            if accept is not None and not accept(msg):
                if receipt is not None:
                    receipt.release()
                return
            kept = await inbox.put((m.subject, msg, receipt) if receipt is not None else (m.subject, msg))  # type: ignore[arg-type]
            if not kept:
                log.warning("inbox %s dropped a message (policy %s)", inbox.name, inbox.policy)

        async def core(m: Any) -> None:
            await deliver(m, durable=False)

        async def durable(m: Any) -> None:
            await deliver(m, durable=True)

        async def make() -> None:
            if bot is not None and self.durable and durable_pattern(pattern):
                sub.nats_sub = await self.bind_durable(bot, pattern, durable)
            else:
                sub.nats_sub = await self.nc.subscribe(pattern, queue=f"bot-{bot}" if bot else "", cb=core)
            if sub.closed:
                await sub.nats_sub.unsubscribe()

        self._spawn(make())
        return sub

    # -- acknowledged when handled -------------------------------------------------------
    def _receipt(self, m: Any, mid: str | None, seen: "collections.OrderedDict[str, _JsReceipt | None]") -> "_JsReceipt":
        """The receipt a durable message is handled under: ACK once handled, NAK when handed back."""
        try:
            redelivered = m.metadata.num_delivered > 1
        except Exception:  # noqa: BLE001 - not a JetStream delivery (no metadata): a first one
            redelivered = False

        def settle(ok: bool) -> None:
            self._open.discard(receipt)
            if ok:
                self.acked += 1
            else:
                self.nakked += 1
                if mid is not None:
                    seen.pop(mid, None)  # given back: if it comes here again it is handled afresh
            target = receipt.msg
            task = asyncio.get_running_loop().create_task(self._reply(target.ack if ok else target.nak))
            self._acks.add(task)
            task.add_done_callback(self._acks.discard)

        receipt = _JsReceipt(m, settle, redelivered=redelivered)
        self._open.add(receipt)
        if self._progress is None or self._progress.done():
            self._progress = asyncio.get_running_loop().create_task(self._keep_in_progress(), name="mesh:in-progress")
        return receipt

    async def _keep_in_progress(self) -> None:
        """While a message is being handled, tell JetStream so (``+WPI``) well within the consumer's ack_wait."""
        while self._open:
            await asyncio.sleep(self._ack_wait / 3)
            for receipt in list(self._open):
                if not receipt.settled:
                    await self._reply(receipt.msg.in_progress)

    async def _reply(self, fn: Any) -> None:
        """Send an ack, nak, term or in-progress; a lost one only means JetStream delivers the message again."""
        try:
            await fn()
        except Exception as exc:  # noqa: BLE001 - the connection is down or closing
            log.debug("could not answer a JetStream delivery: %s", exc)

    async def ensure_consumer(self, bot: str, pattern: str) -> Any:
        """The durable consumer of ``bot`` on ``pattern`` (created once; kept while the bot is away)."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        name = f"{bot}-{pattern.split('.')[-1]}"
        cfg = ConsumerConfig(
            durable_name=name, deliver_group=name, deliver_subject=f"_shoal.deliver.{name}", filter_subject=pattern,
            ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.NEW, ack_wait=self.config.ack_wait, max_deliver=5,
            max_ack_pending=1000,
        )
        try:
            info = await self.js.add_consumer(self.config.stream, cfg)
            return info.config
        except Exception:  # noqa: BLE001 - it exists already: bind to it as it is
            return (await self.js.consumer_info(self.config.stream, name)).config

    async def bind_durable(self, bot: str, pattern: str, cb: Any) -> Any:
        cfg = await self.ensure_consumer(bot, pattern)
        if cfg.ack_wait:  # the consumer's own (made by the server, perhaps with other settings): beat within it
            self._ack_wait = min(self._ack_wait, float(cfg.ack_wait))
        return await self.js.subscribe_bind(self.config.stream, cfg, cfg.durable_name, cb=cb, manual_ack=True)

    # -- request / reply -------------------------------------------------------------
    def serve(self, subject: str, handler: Handler) -> _Sub:
        sub = _Sub(self)
        self._subs.add(sub)

        async def answer(m: Any) -> None:
            try:
                msg = wire.decode(m.data, m.headers)
                result = await handler(msg)
                body, headers = wire.encode(result)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the asker gets the error, the server lives on
                body, headers = wire.error_body(exc), {wire.KIND: "x"}
            if m.reply:
                await self.nc.publish(m.reply, body, headers=headers)

        async def cb(m: Any) -> None:
            if sub.closed:
                return
            task = asyncio.get_running_loop().create_task(answer(m))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

        async def make() -> None:
            sub.nats_sub = await self.nc.subscribe(subject, queue=SERVE_GROUP, cb=cb)
            if sub.closed:
                await sub.nats_sub.unsubscribe()

        self._spawn(make())
        return sub

    async def request(self, subject: str, msg: BaseModel, *, timeout: float) -> BaseModel:
        import nats.errors

        if self.answer_here is not None and (local := self.answer_here(subject, msg)) is not None:
            self.answered_here += 1
            return await asyncio.wait_for(local(msg), timeout)  # type: ignore[no-any-return]
        if self._pending:
            await self.ready()
        body, headers = wire.encode(msg)
        try:
            reply = await self.nc.request(subject, body, timeout=timeout, headers=headers)
        except nats.errors.NoRespondersError:
            raise NotFound(f"nobody answers on '{subject}'", hint="is that bot configured, enabled and its worker up?") from None
        except nats.errors.TimeoutError:
            raise asyncio.TimeoutError(f"no answer on '{subject}' within {timeout} s") from None
        return wire.decode(reply.data, reply.headers)
