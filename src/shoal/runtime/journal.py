"""The journal: records every conversation event and numbers it.

It subscribes to ``conv.>``, gives each event the next per-conversation
``seq``, writes it to the store, and only then hands it to listeners (the
CLI, websocket clients). A client that reconnects asks for what came after
its last ``seq`` and gets it from the store, page by page, however long.

The deltas of a reply or a thought are numbered and delivered like every
event but kept in memory, not written: the stream's end event holds the
whole text, and writing every token only to delete it at the end was most
of the journal's work. A client that reconnects in the middle of a stream
gets its deltas so far from memory, the rest live.

Nothing is skipped silently:

* a listener's inbox is bounded (drop oldest); when it dropped events, the
  next event shows a gap in ``seq`` and the listener fills it from the store
  (and from the events not yet written) before going on, counting it in
  ``refilled``;
* a failed write is retried; events that could not be written stay in memory
  (``unrecorded``) and are written when the store recovers, and every
  listener is told with a ``JournalProblem`` (the websocket turns it into an
  error frame), so the person sees that what they watch is not yet saved.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any, AsyncIterator

from shoal.runtime.inbox import Inbox
from shoal.runtime.mesh import Delivery, Mesh
from shoal.runtime.messages import Event, parse_event
from shoal.store.conversations import ConversationStore

log = logging.getLogger(__name__)

#: events recorded per database transaction, at most
BATCH = 256
#: events read from the store per replay page
PAGE = 500
#: unwritten events kept for a later retry before the journal refuses more
MAX_UNRECORDED = 200_000
#: seconds between attempts to write events the store refused
RETRY_AFTER = 1.0
#: deltas of one stream kept in memory at most (a stream that never ends must not grow forever)
MAX_STREAM = 50_000
#: kinds that are pieces of a stream: numbered and delivered, kept in memory until the stream's end
#: event (which holds the whole text) is recorded, never written to the store
DELTAS = frozenset({"reply.delta", "thought.delta"})
_ENDS = frozenset({"reply.end", "thought.end"})

Row = tuple[str, int, str, str, "str | None", str, float, "str | None"]


class JournalProblem:
    """Not an event: a notice to listeners that events could not be saved (or were saved again)."""

    kind = "journal.problem"
    seq = None

    def __init__(self, message: str, *, unrecorded: int, recovered: bool = False) -> None:
        self.message = message
        self.unrecorded = unrecorded
        self.recovered = recovered
        self.conversation: str | None = None
        self.turn = None


class Listener:
    """A bounded stream of recorded events for one conversation (or all), without gaps."""

    def __init__(self, journal: "Journal", conversation: str | None, maxsize: int, after: int | None = None) -> None:
        self.journal = journal
        self.conversation = conversation
        self.inbox: Inbox[Any] = Inbox(maxsize, "drop_oldest", name=f"listener.{conversation}")
        #: last seq handed out, per conversation (events at or below it are not repeated)
        self._last: dict[str, int] = {}
        if conversation is not None and after is not None:
            self._last[conversation] = after
        self._backlog: collections.deque[Any] = collections.deque()
        #: events fetched from the store because the inbox had dropped them
        self.refilled = 0

    @property
    def dropped(self) -> int:
        return self.inbox.dropped

    def skip_to(self, conversation: str, seq: int) -> None:
        """The caller has every event of ``conversation`` up to ``seq`` (e.g. from a replay)."""
        self._last[conversation] = max(seq, self._last.get(conversation, 0))

    async def get(self, timeout: float | None = None) -> Any:
        """The next event in ``seq`` order (or a ``JournalProblem``)."""
        if timeout is None:
            return await self._next()
        return await asyncio.wait_for(self._next(), timeout)

    async def _next(self) -> Any:
        while True:
            if self._backlog:
                item = self._backlog.popleft()
            else:
                item = await self.inbox.get()
            if not isinstance(item, Event) or item.seq is None:
                return item
            last = self._last.get(item.conversation)
            if last is not None and item.seq <= last:
                continue  # already handed out (a refill covered it)
            if last is not None and item.seq > last + 1:
                missing = await self.journal.events_between(item.conversation, last, item.seq)
                if missing:
                    self.refilled += len(missing)
                    self._backlog.appendleft(item)
                    self._backlog.extendleft(reversed(missing))
                    continue
            self._last[item.conversation] = item.seq
            return item

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Any]:
        while True:
            yield await self.get()

    def close(self) -> None:
        self.journal._listeners.discard(self)


class Journal:
    def __init__(self, mesh: Mesh, store: ConversationStore) -> None:
        self.mesh = mesh
        self.store = store
        self.inbox: Inbox[Delivery] = Inbox(100_000, "block", name="journal")
        self._seq: dict[str, int] = {}
        self._listeners: set[Listener] = set()
        self._sub: Any = None
        self._task: asyncio.Task[None] | None = None
        #: events numbered and delivered but not yet written (the store refused them)
        self._unwritten: collections.deque[tuple[Row, Event]] = collections.deque()
        #: (conversation, message or thought id) -> the deltas of a stream still open
        self._streams: dict[tuple[str, str], collections.deque[Event]] = {}
        self.recorded = 0
        self.write_failures = 0
        self.error: str | None = None

    @property
    def unrecorded(self) -> int:
        return len(self._unwritten)

    async def start(self) -> None:
        self._sub = self.mesh.subscribe("conv.>", self.inbox)
        self._task = asyncio.create_task(self._run(), name="journal")

    async def stop(self) -> None:
        if self._sub is not None:
            self._sub.close()
        # record what was already published before stopping
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while (self.inbox.pending or self._unwritten) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._unwritten:
            log.error("the journal stops with %d events it could not write: %s", len(self._unwritten), self.error)

    def listen(self, conversation: str | None = None, *, maxsize: int = 10_000, after: int | None = None) -> Listener:
        """A listener for new events; ``after`` (a seq) says what the caller already has."""
        if after is None and conversation is not None:
            after = self._seq.get(conversation)
        lst = Listener(self, conversation, maxsize, after)
        self._listeners.add(lst)
        return lst

    async def replay(self, conversation: str, after: int, *, limit: int | None = None) -> list[Event]:
        """Recorded events after ``after`` (all of them, or the first ``limit``)."""
        out: list[Event] = []
        async for page in self.pages(conversation, after):
            out += page
            if limit is not None and len(out) >= limit:
                return out[:limit]
        return out

    async def pages(self, conversation: str, after: int, *, page: int = PAGE) -> AsyncIterator[list[Event]]:
        """Recorded events after ``after``, ``page`` at a time, in order, however many there are."""
        last = after
        while True:
            rows = await self.store.events_since(conversation, last, limit=page)
            events = [parse_event(p) for p in rows]
            pending = [ev for _row, ev in list(self._unwritten) if ev.conversation == conversation and (ev.seq or 0) > last]
            pending += [
                ev for (conv, _ref), deltas in list(self._streams.items()) if conv == conversation
                for ev in list(deltas) if (ev.seq or 0) > last
            ]
            if pending:
                events = sorted({e.seq: e for e in events + pending}.values(), key=lambda e: e.seq or 0)[:page]
            if not events:
                if last == 0 or last > after:
                    self._learn_seq(conversation, last)
                return
            yield events
            last = events[-1].seq or last
            if len(events) < page:
                self._learn_seq(conversation, last)
                return

    async def events_between(self, conversation: str, after: int, before: int) -> list[Event]:
        """Events with ``after < seq < before`` (to fill a listener's gap)."""
        out: list[Event] = []
        async for page in self.pages(conversation, after):
            for ev in page:
                if (ev.seq or 0) >= before:
                    return out
                out.append(ev)
        return out

    def _learn_seq(self, conversation: str, last: int) -> None:
        """A read of the whole tail of a conversation saw its last seq: the journal need not ask again
        (and can go on numbering while the store refuses reads)."""
        self._seq.setdefault(conversation, last)

    async def _next_seq(self, conversation: str) -> int:
        told = False
        while conversation not in self._seq:
            try:
                self._seq[conversation] = await self.store.max_seq(conversation)
            except Exception as exc:  # the store is away: nothing can be numbered until it answers
                self.error = f"{type(exc).__name__}: {exc}"
                if told:
                    await asyncio.sleep(RETRY_AFTER)
                    continue
                told = True
                log.error("journal cannot number events of %s (retrying): %s", conversation, self.error)
                self._notify(
                    f"shoal could not read this conversation's events ({self.error}); new events wait until the "
                    "database answers — check the disk and the database file",
                    conversation=conversation,
                )
                await asyncio.sleep(RETRY_AFTER)
        if told:
            self._notify("the database answers again; the waiting events go on", recovered=True, conversation=conversation)
        self._seq[conversation] += 1
        return self._seq[conversation]

    async def _run(self) -> None:
        while True:
            if self._unwritten:
                try:
                    first = await asyncio.wait_for(self.inbox.get(), RETRY_AFTER)
                except asyncio.TimeoutError:
                    await self._write([])
                    continue
            else:
                first = await self.inbox.get()
            batch = [first]
            while len(batch) < BATCH and (more := self.inbox.get_nowait()) is not None:
                batch.append(more)
            try:
                await self._take(batch)
            except Exception:  # never the end of the journal: one bad batch is logged, the next goes on
                log.exception("journal could not handle a batch of %d messages", len(batch))

    async def _take(self, batch: list[Delivery]) -> None:
        """Number, record and deliver one batch of published messages."""
        import time as _t, os as _o
        _t0 = _t.time()
        events: list[Event] = []
        recorded: list[Event] = []
        rows: list[Row] = []
        # conversations seen for the first time: their last seq in one read, not one read each
        # (200 people starting at once would otherwise wait for 200 reads in a row)
        unknown = list(dict.fromkeys(m.conversation for _s, m in batch if isinstance(m, Event) and m.conversation not in self._seq))
        if len(unknown) > 1:
            try:
                for conv, last in (await self.store.max_seqs(unknown)).items():
                    self._seq.setdefault(conv, last)
            except Exception:  # noqa: BLE001 - _next_seq retries each one and says why
                pass
        for _subject, msg in batch:
            if not isinstance(msg, Event):
                continue
            ev = msg.model_copy(update={"seq": await self._next_seq(msg.conversation)})
            ref = getattr(ev, "message_id", None) or getattr(ev, "thought_id", None)
            events.append(ev)
            if ev.kind in DELTAS and ref:
                stream = self._streams.setdefault((ev.conversation, ref), collections.deque(maxlen=MAX_STREAM))
                stream.append(ev)
                continue
            rows.append((ev.conversation, ev.seq, ev.kind, ev.bot, ref, ev.json_text(), ev.ts, ev.turn))  # type: ignore[arg-type]
            recorded.append(ev)
        _t1 = _t.time()
        await self._write(list(zip(rows, recorded)))
        _t2 = _t.time()
        if _o.environ.get("STAGES"):
            with open(_o.environ["STAGES"], "a") as f:
                for ev in events:
                    f.write(f"J {ev.kind} {1000*(_t0-ev.ts):.1f} {1000*(_t2-_t1):.1f} {len(batch)} {1000*(_t1-_t0):.1f}\n")
                    if ev.kind == "bot.error":
                        f.write("E " + ev.json_text()[:600] + "\n")
        self.recorded += len(rows)
        for ev in recorded:
            if ev.kind in _ENDS:
                ref = getattr(ev, "message_id", None) or getattr(ev, "thought_id", None)
                self._streams.pop((ev.conversation, ref or ""), None)
        for ev in events:
            self._deliver(ev)

    async def _write(self, fresh: list[tuple[Row, Event]]) -> None:
        """Write what is waiting and ``fresh``, in order; keep it for a retry when the store refuses."""
        if self._unwritten:
            if len(self._unwritten) + len(fresh) > MAX_UNRECORDED:
                # bounded memory: the oldest unwritten events are lost, and everyone is told
                lost = len(self._unwritten) + len(fresh) - MAX_UNRECORDED
                for _ in range(lost):
                    self._unwritten.popleft()
                self._notify(f"{lost} events could not be saved and were dropped: {self.error}")
            self._unwritten.extend(fresh)
            todo = list(self._unwritten)
        else:
            todo = fresh
        if not todo:
            return
        try:
            for start in range(0, len(todo), BATCH):
                await self.store.append_events([row for row, _ in todo[start : start + BATCH]])
        except Exception as exc:  # the store failing must not stop live delivery
            self.write_failures += 1
            first_failure = not self._unwritten
            if first_failure:
                self._unwritten.extend(fresh)
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("journal could not record %d events (kept for a retry): %s", len(self._unwritten), self.error)
            if first_failure:
                self._notify(
                    f"shoal could not save this conversation's events ({self.error}); they are kept in memory and "
                    "retried — check the disk and the database file"
                )
            return
        if self._unwritten:
            self._unwritten.clear()
            self.error = None
            log.warning("journal recovered: the events kept in memory are written")
            self._notify("the events that could not be saved are saved now", recovered=True)

    def _deliver(self, ev: Event) -> None:
        for lst in list(self._listeners):
            if lst.conversation in (None, ev.conversation):
                lst.inbox.put_nowait(ev)

    def _notify(self, message: str, *, recovered: bool = False, conversation: str | None = None) -> None:
        problem = JournalProblem(message, unrecorded=len(self._unwritten), recovered=recovered)
        for lst in list(self._listeners):
            if conversation is None or lst.conversation in (None, conversation):
                lst.inbox.put_nowait(problem)
