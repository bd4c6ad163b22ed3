"""The data service: a worker's bots reach history and memory through the server that owns the database.

A bot in a worker never opens SQLite. Its ``ctx.conversations`` and
``ctx.memories`` are ``RemoteStore`` proxies: each call becomes a request on
``shoal.data`` (with a timeout) answered by the server's ``DataService``,
which runs the very store method and returns its result (``nats_wire``).

What a worker may ask is bounded three ways:

* **role** — ``ROLE_METHODS`` lists, per bot role, the store methods its
  bots call; anything else is refused. The bot must be a configured bot of
  that role that the server lets run remotely;
* **turn grants** — the server grants a conversation (and its people) when
  a user turn is published in it, for ``grant_seconds``; every argument
  naming a conversation, user, message, pending fact or new memory must
  fall within a live grant, and the user of a call must be a person of the
  conversation it names;
* **answers** — a refusal looks like an unknown id (``NotFound``), so a
  worker learns nothing about data it was not given.

A NATS restart can lose a request or its answer (core request/reply is at
most once). Each call carries a random ``call`` id; the worker asks again,
with the same id, when its connection was re-made while it waited (and while
nobody answers, until its timeout), and the service answers a repeated id
with the first answer — the store method runs once however often it is asked.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import inspect
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from shoal.errors import BackendUnavailable, NotFound, PermissionDenied, ShoalError
from shoal.runtime import nats_wire as wire

log = logging.getLogger(__name__)

SUBJECT = "shoal.data"
#: answers the service keeps for a worker that asks again (count, and seconds at least)
KEEP_ANSWERS, KEEP_SECONDS = 1024, 120.0
#: seconds between a waiting call's looks at its connection (re-made: ask again)
WATCH = 0.2

#: per role, the store methods its bots may call through the data service (tests check them
#: against the stores' signatures)
ROLE_METHODS: dict[str, dict[str, frozenset[str]]] = {
    "thinker": {
        "conversations": frozenset({"history", "save_thought", "get_conversation", "thoughts"}),
        "memories": frozenset(),
    },
    "memory": {
        "conversations": frozenset({"get_conversation", "get_message", "scrolled_out", "set_summary"}),
        "memories": frozenset(
            {"add", "add_many", "latest_raw", "search", "facts", "propose", "pending", "settle_pending", "decline"}
        ),
    },
}

#: arguments that name something a grant must cover
_CONV_ARGS = ("conversation_id", "conversation")
_USER_ARGS = ("user_id",)


def _not_found() -> NotFound:
    return NotFound("no such conversation, message or memory", hint="a worker reads only what a user turn granted it")


@dataclass
class Grant:
    conversation: str
    users: set[str] = field(default_factory=set)
    until: float = 0.0


class Grants:
    """Conversations (and their people) a worker may read and write, each for a while after a turn."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._by_conv: dict[str, Grant] = {}

    def give(self, conversation: str, users: set[str]) -> None:
        g = self._by_conv.setdefault(conversation, Grant(conversation))
        g.users |= {u for u in users if u}
        g.until = time.monotonic() + self.seconds

    def conversation(self, conversation: str) -> Grant:
        g = self._by_conv.get(conversation)
        if g is None or g.until < time.monotonic():
            raise _not_found()
        return g

    def user(self, user_id: str) -> None:
        now = time.monotonic()
        if not any(user_id in g.users and g.until >= now for g in self._by_conv.values()):
            raise _not_found()

    def prune(self) -> None:
        now = time.monotonic()
        for k in [k for k, g in self._by_conv.items() if g.until < now]:
            del self._by_conv[k]


class DataService:
    """The server side: answers ``shoal.data`` requests from workers' bots within roles and grants."""

    def __init__(self, nc: Any, conversations: Any, memories: Any, config: Any, grants: Grants) -> None:
        self.nc = nc
        self.stores = {"conversations": conversations, "memories": memories}
        self.config = config
        self.grants = grants
        self.answered = 0
        self.refused = 0
        #: calls answered, by store method (bench/mesh_nats.py reports them per turn)
        self.calls: collections.Counter[str] = collections.Counter()
        self._sub: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: digest of a request with a call id -> (its answer, being made or made, and when it was asked)
        self._answers: collections.OrderedDict[bytes, tuple[asyncio.Task[tuple[bytes, dict[str, str]]], float]] = (
            collections.OrderedDict()
        )
        self._keep = max(KEEP_SECONDS, 2 * float(getattr(getattr(config, "mesh", None), "data_timeout", 0) or 0))
        #: requests answered from ``_answers`` (a worker asked again)
        self.repeated = 0
        #: is this bot allowed to run in a worker now? (set by the host)
        self.remote_ok: Any = lambda name: True

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(SUBJECT, queue="shoal-data", cb=self._on_request)

    async def stop(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # noqa: BLE001 - the connection may be closing
                pass
        running = list(self._tasks) + [t for t, _ in self._answers.values()]
        for t in running:
            t.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        self._answers.clear()

    async def _on_request(self, m: Any) -> None:
        task = asyncio.get_running_loop().create_task(self._answer(m))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, m: Any) -> None:
        try:
            req = json.loads(m.data)
        except ValueError as exc:
            body, headers = wire.error_body(exc), {wire.KIND: "x"}
        else:
            if isinstance(req, dict) and req.get("call"):
                body, headers = await self._once(hashlib.sha256(m.data).digest(), req)
            else:
                body, headers = await self._run(req)
        if m.reply:
            await self.nc.publish(m.reply, body, headers=headers)

    async def _once(self, key: bytes, req: Any) -> tuple[bytes, dict[str, str]]:
        """The answer to a call with an id: run once; asked again (same body, same id), the same answer."""
        now = time.monotonic()
        while self._answers:
            _, (oldest, asked) = next(iter(self._answers.items()))
            if len(self._answers) < KEEP_ANSWERS and now - asked < self._keep:
                break
            if not oldest.done():
                break  # never forget a call still running (its repeat would run it twice)
            self._answers.popitem(last=False)
        kept = self._answers.get(key)
        if kept is None:
            task = asyncio.get_running_loop().create_task(self._run(req))
            self._answers[key] = (task, now)
        else:
            task = kept[0]
            self.repeated += 1
        return await asyncio.shield(task)

    async def _run(self, req: Any) -> tuple[bytes, dict[str, str]]:
        try:
            result = await self.call(
                str(req["bot"]), str(req["store"]), str(req["method"]), wire.from_wire(req.get("args", [])),
                wire.from_wire(req.get("kwargs", {})),
            )
            self.answered += 1
            self.calls[f"{req['store']}.{req['method']}"] += 1
            return wire.dumps(result), {wire.KIND: "d"}
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the worker gets the error
            if not isinstance(exc, ShoalError):
                log.exception("data service failed")
            self.refused += isinstance(exc, (NotFound, PermissionDenied))
            return wire.error_body(exc), {wire.KIND: "x"}

    async def call(self, bot: str, store: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Run ``store.method(*args, **kwargs)`` for ``bot`` if its role and the grants allow it."""
        try:
            bc = self.config.bot(bot)
        except ShoalError:
            raise PermissionDenied(f"'{bot}' is not a bot of this swarm") from None
        allowed = ROLE_METHODS.get(bc.role, {}).get(store, frozenset())
        if method not in allowed or not self.remote_ok(bot):
            raise PermissionDenied(f"bot '{bot}' (role {bc.role}) may not call {store}.{method} from a worker")
        target = self.stores[store]
        fn = getattr(target, method)
        try:
            bound = inspect.signature(fn).bind(*args, **kwargs)
        except TypeError as exc:
            raise PermissionDenied(f"bad arguments for {store}.{method}: {exc}") from None
        if method == "thoughts" and bound.arguments.get("bot") != bot:
            raise PermissionDenied(f"bot '{bot}' may read only its own thoughts (thoughts(..., bot='{bot}'))")
        await self._check(method, bound.arguments)
        return await fn(*bound.args, **bound.kwargs)

    async def _check(self, method: str, a: dict[str, Any]) -> None:
        """Every id in the arguments must fall within a live grant (else: not found)."""
        self.grants.prune()
        conv = next((a[k] for k in _CONV_ARGS if a.get(k)), None)
        user = next((a[k] for k in _USER_ARGS if a.get(k)), None)
        checked = False
        if conv is not None:
            g = self.grants.conversation(str(conv))
            if user is not None and user not in g.users:
                raise _not_found()
            checked = True
        elif user is not None:
            self.grants.user(str(user))
            checked = True
        if method == "get_message":
            msg = await self.stores["conversations"].get_message(a["message_id"])
            self.grants.conversation(msg.conversation_id)
            checked = True
        if method == "add_many":
            for it in a["items"]:
                g = self.grants.conversation(str(it.conversation_id)) if it.conversation_id else None
                if g is None or it.user_id not in g.users:
                    raise _not_found()
            checked = True
        if method in ("settle_pending", "decline"):
            ids = list(a.get("ids") or a.get("pending_ids") or [])
            if ids:
                db = self.stores["memories"].db
                marks = ",".join("?" * len(ids))
                rows = await db.read(
                    lambda c: c.execute(f"SELECT DISTINCT conversation_id FROM memory_pending WHERE id IN ({marks})", ids).fetchall()
                )
                for r in rows:
                    self.grants.conversation(r["conversation_id"])
            checked = True
        if not checked:
            raise _not_found()


class RemoteStore:
    """A worker bot's view of a store: the same async methods, run by the server's data service."""

    def __init__(self, nc: Any, store: str, bot: str, *, timeout: float) -> None:
        self._nc, self._store, self._bot, self._timeout = nc, store, bot, timeout
        #: a worker has no database (the edge hook's recall needs one: it is off in workers)
        self.db = None

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)

        async def call(*args: Any, **kwargs: Any) -> Any:
            body = json.dumps(
                {"bot": self._bot, "store": self._store, "method": method, "args": wire.to_wire(list(args)),
                 "kwargs": wire.to_wire(kwargs), "call": uuid.uuid4().hex},
                separators=(",", ":"),
            ).encode()
            reply = await self._ask(body, f"{self._store}.{method}")
            if (reply.headers or {}).get(wire.KIND) == "x":
                raise wire.error_from(json.loads(reply.data))
            return wire.loads(reply.data)

        call.__name__ = method
        return call

    async def _ask(self, body: bytes, what: str) -> Any:
        """The service's answer to ``body``, asking again while the connection is re-made or nobody answers."""
        import nats.errors

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        pause = 0.05
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise BackendUnavailable(
                    f"the server's data service took longer than {self._timeout} s ({what})",
                    hint="raise [mesh] data_timeout, or check the server",
                )
            reconnects = self._nc.stats["reconnects"]
            ask = asyncio.ensure_future(self._nc.request(SUBJECT, body, timeout=left))
            try:
                while not ask.done() and self._nc.stats["reconnects"] == reconnects:
                    await asyncio.wait({ask}, timeout=WATCH)
            finally:
                if not ask.done():
                    ask.cancel()  # the request or its answer may have gone with the old connection
                    await asyncio.gather(ask, return_exceptions=True)
            if ask.cancelled():
                continue
            try:
                return ask.result()
            except nats.errors.NoRespondersError:
                # nobody serves shoal.data (yet: after a NATS restart the server resubscribes a moment later)
                if loop.time() + pause >= deadline:
                    raise BackendUnavailable(
                        f"the server's data service does not answer ({what})", hint="is `shoal up --mesh nats` running?"
                    ) from None
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
            except nats.errors.TimeoutError:
                continue  # the deadline says whether there is time to ask again
