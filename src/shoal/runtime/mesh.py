"""The mesh: publish/subscribe and request/reply between bots.

Subjects follow NATS conventions (dot-separated tokens; ``*`` matches one
token, ``>`` the rest) so the same names work on the in-process bus and on
NATS: ``conv.<id>.user|reply|system|thought|memory|route`` and
``bot.<name>.control``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Protocol

from pydantic import BaseModel

from shoal.errors import NotFound
from shoal.runtime.inbox import Inbox

log = logging.getLogger(__name__)

Delivery = tuple[str, BaseModel]
Handler = Callable[[Any], Awaitable[BaseModel]]


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
