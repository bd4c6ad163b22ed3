"""The journal: records every conversation event and numbers it.

It subscribes to ``conv.>``, gives each event the next per-conversation
``seq``, writes it to the store, and only then hands it to listeners (the
CLI, websocket clients). A client that reconnects asks for what came after
its last ``seq`` and gets it from the store.
"""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator

from shoal.runtime.inbox import Inbox
from shoal.runtime.mesh import Delivery, Mesh
from shoal.runtime.messages import Event, parse_event
from shoal.store.conversations import ConversationStore

log = logging.getLogger(__name__)

#: events recorded per database transaction, at most
BATCH = 256


class Listener:
    """A bounded stream of recorded events for one conversation (or all)."""

    def __init__(self, journal: "Journal", conversation: str | None, maxsize: int) -> None:
        self.journal = journal
        self.conversation = conversation
        self.inbox: Inbox[Event] = Inbox(maxsize, "drop_oldest", name=f"listener.{conversation}")

    @property
    def dropped(self) -> int:
        return self.inbox.dropped

    async def get(self, timeout: float | None = None) -> Event:
        if timeout is None:
            return await self.inbox.get()
        return await asyncio.wait_for(self.inbox.get(), timeout)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Event]:
        while True:
            yield await self.inbox.get()

    def close(self) -> None:
        self.journal._listeners.discard(self)


class Journal:
    def __init__(self, mesh: Mesh, store: ConversationStore) -> None:
        self.mesh = mesh
        self.store = store
        self.inbox: Inbox[Delivery] = Inbox(100_000, "block", name="journal")
        self._seq: dict[str, int] = {}
        self._listeners: set[Listener] = set()
        self._sub = None
        self._task: asyncio.Task[None] | None = None
        self.recorded = 0

    async def start(self) -> None:
        self._sub = self.mesh.subscribe("conv.>", self.inbox)
        self._task = asyncio.create_task(self._run(), name="journal")

    async def stop(self) -> None:
        if self._sub is not None:
            self._sub.close()
        # record what was already published before stopping
        deadline = asyncio.get_running_loop().time() + 5
        while self.inbox.pending and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def listen(self, conversation: str | None = None, *, maxsize: int = 10_000) -> Listener:
        lst = Listener(self, conversation, maxsize)
        self._listeners.add(lst)
        return lst

    async def replay(self, conversation: str, after: int) -> list[Event]:
        return [parse_event(p) for p in await self.store.events_since(conversation, after)]

    async def _next_seq(self, conversation: str) -> int:
        if conversation not in self._seq:
            self._seq[conversation] = await self.store.max_seq(conversation)
        self._seq[conversation] += 1
        return self._seq[conversation]

    async def _run(self) -> None:
        while True:
            batch = [await self.inbox.get()]
            while len(batch) < BATCH and (more := self.inbox.get_nowait()) is not None:
                batch.append(more)
            events: list[Event] = []
            rows = []
            for _subject, msg in batch:
                if not isinstance(msg, Event):
                    continue
                ev = msg.model_copy(update={"seq": await self._next_seq(msg.conversation)})
                ref = getattr(ev, "message_id", None) or getattr(ev, "thought_id", None)
                rows.append((ev.conversation, ev.seq, ev.kind, ev.bot, ref, ev.model_dump_json(), ev.ts))
                events.append(ev)
            try:
                await self.store.append_events(rows)
            except Exception:  # the store failing must not stop live delivery
                log.exception("journal could not record %d events", len(rows))
            self.recorded += len(rows)
            for ev in events:
                for lst in list(self._listeners):
                    if lst.conversation in (None, ev.conversation):
                        lst.inbox.put_nowait(ev)
