"""The mesh: publish/subscribe and request/reply between bots.

Subjects follow NATS conventions (dot-separated tokens; ``*`` matches one
token, ``>`` the rest) so the same names work on the in-process bus and on
NATS: ``conv.<id>.user|reply|system|thought|memory|route`` and
``bot.<name>.control``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import Any, Awaitable, Callable, Protocol

from pydantic import BaseModel

from shoal.errors import NotFound
from shoal.runtime.inbox import Inbox

log = logging.getLogger(__name__)

Delivery = tuple[str, BaseModel]
Handler = Callable[[Any], Awaitable[BaseModel]]


class Receipt:
    """How a bot tells the mesh that a delivered message has been handled.

    A durable subscription on NATS puts ``(subject, msg, receipt)`` in a bot's
    inbox and acknowledges the message only when the receipt settles: the
    handler returned and every piece of work it ``hold``-s the receipt for
    (``TaskOwner.spawn(..., receipt=)``: a thought, an ingestion) is done.
    ``release(ok=False)`` — the work was cancelled by a shutdown, not finished —
    hands the message back (NAK) for another instance; a process that dies
    never acknowledges, so JetStream delivers the message again after the
    consumer's ``ack_wait``. ``redelivered`` says the message came before
    (another process may have done the work: bots look in the store).
    """

    def __init__(self, settle: Callable[[bool], None], *, redelivered: bool = False) -> None:
        self._settle = settle
        self._holds = 1  # the handler's
        self.settled = False
        self.redelivered = redelivered

    def hold(self) -> "Receipt":
        if not self.settled:
            self._holds += 1
        return self

    def release(self, ok: bool = True) -> None:
        if self.settled:
            return
        self._holds -= 1
        if not ok or self._holds <= 0:
            self.settled = True
            self._settle(ok)


#: the receipt of the message a bot's handler is handling now (None: in-process, or not durable)
current_receipt: contextvars.ContextVar[Receipt | None] = contextvars.ContextVar("current_receipt", default=None)


def subject_matches(pattern: str, subject: str) -> bool:
    return _tokens_match(pattern.split("."), subject.split("."))


def _tokens_match(p: list[str], s: list[str]) -> bool:
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s):
            return False
        if tok != "*" and tok != s[i]:
            return False
    return len(p) == len(s)


Accept = Callable[[BaseModel], bool]


class Subscription:
    def __init__(self, mesh: "InProcessMesh", pattern: str, inbox: Inbox[Delivery], accept: Accept | None) -> None:
        self.mesh = mesh
        self.pattern = pattern
        self.tokens = pattern.split(".")
        self.inbox = inbox
        #: messages the subscriber does not want are never queued (a bot that
        #: handles only reply.end must not fill its inbox with deltas)
        self.accept = accept

    def close(self) -> None:
        self.mesh._subs.discard(self)


class Mesh(Protocol):
    async def publish(self, subject: str, msg: BaseModel) -> None: ...

    def subscribe(self, pattern: str, inbox: Inbox[Delivery], accept: Accept | None = None) -> Any: ...

    def serve(self, subject: str, handler: Handler) -> Any: ...

    async def request(self, subject: str, msg: BaseModel, *, timeout: float) -> BaseModel: ...

    async def close(self) -> None: ...


class InProcessMesh:
    """The default mesh: everything in one process, delivered in order."""

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self._servers: dict[str, Handler] = {}
        self.published = 0

    async def publish(self, subject: str, msg: BaseModel) -> None:
        self.published += 1
        tokens = subject.split(".")
        for sub in list(self._subs):
            if _tokens_match(sub.tokens, tokens) and (sub.accept is None or sub.accept(msg)):
                kept = await sub.inbox.put((subject, msg))
                if not kept:
                    log.warning("inbox %s dropped a message (policy %s)", sub.inbox.name, sub.inbox.policy)

    def subscribe(self, pattern: str, inbox: Inbox[Delivery], accept: Accept | None = None) -> Subscription:
        sub = Subscription(self, pattern, inbox, accept)
        self._subs.add(sub)
        return sub

    def serve(self, subject: str, handler: Handler) -> "_Served":
        self._servers[subject] = handler
        return _Served(self, subject)

    async def request(self, subject: str, msg: BaseModel, *, timeout: float) -> BaseModel:
        handler = self._servers.get(subject)
        if handler is None:
            raise NotFound(f"nobody answers on '{subject}'", hint="is that bot configured and enabled?")
        return await asyncio.wait_for(handler(msg), timeout)

    async def close(self) -> None:
        self._subs.clear()
        self._servers.clear()


class _Served:
    def __init__(self, mesh: InProcessMesh, subject: str) -> None:
        self.mesh, self.subject = mesh, subject

    def close(self) -> None:
        self.mesh._servers.pop(self.subject, None)
