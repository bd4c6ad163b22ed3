"""The memory bot: notes every message, extracts grounded facts, recalls, crushes.

Per user turn routed to it:

1. layer 1 — a raw note of the message, embedded at once;
2. facts about the user from rules and from the model (schema-constrained,
   one retry, then dropped and counted), each grounded in the message and
   stored as the clause the user said, with provenance; a new value for a
   single-valued attribute supersedes the old fact, which stays as history;
   with ``memory.consent = "ask"`` facts wait for the user's yes;
3. older facts that bear on this turn (the primary may say "I remember ...");
4. crush: once ``memory.crush_after`` messages have scrolled out of the
   conversation bot's history, they are summarised into one memory and into
   the conversation's running summary, which the conversation bot keeps in
   its instruction. The messages themselves stay in the store.

Assistant replies are noted too. Recall queries are answered at once, without
waiting for extraction.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
from typing import Any, AsyncIterator, ClassVar

from shoal.errors import NotFound, ShoalError
from shoal.learn.adapters import resolve_served
from shoal.learn.extraction import EXTRACTION_ADAPTERS, adapter_messages
from shoal.memory.pipeline import ModelExtractor, ingest
from shoal.memory.store import Memory, NewMemory, keywords
from shoal.runtime.bot import Bot
from shoal.runtime.messages import (
    Ack,
    ConsentDecision,
    Control,
    FactsQuery,
    FactsResult,
    MemoryConsent,
    MemoryDone,
    MemoryItem,
    MemoryProposed,
    MemoryRejected,
    MemoryWrite,
    RecallQuery,
    RecallResult,
    ReplyEnd,
    Route,
)
from shoal.store.conversations import Conversation, Message
from shoal.types import ChatMessage, Priority

log = logging.getLogger(__name__)

#: a recalled fact "bears on" a turn when it shares a content word or is this similar
BEARING_SIMILARITY = 0.55
#: conversations the memory bot keeps (id, owner, room) between turns
CONVERSATIONS_KEPT = 1024


def item(m: Memory, supersedes: str | None = None) -> MemoryItem:
    return MemoryItem(
        id=m.id,
        kind=m.kind,
        text=m.text,
        attribute=m.attribute,
        value=m.value,
        sources=m.sources,
        method=m.method,
        supersedes=supersedes or m.supersedes,
        facts=m.live_facts(),
        created_at=m.created_at,
    )


class MemoryBot(Bot):
    role: ClassVar[str] = "memory"
    priority: ClassVar[Priority] = Priority.MEMORY
    subscribes: ClassVar[tuple[str, ...]] = ("conv.*.route", "conv.*.reply")
    reads: ClassVar[tuple[type[Control], ...]] = (RecallQuery, FactsQuery)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # one turn at a time per user: a later "I moved to York" must supersede
        # an earlier "I live in Leeds", not race it; different users run in parallel
        self._serial: dict[str, asyncio.Lock] = {}
        #: conversations seen lately: only what never changes is used (id, owner, whether it is a room),
        #: so a turn over the mesh costs no round trip to the data service for it
        self._convs: collections.OrderedDict[str, Conversation] = collections.OrderedDict()
        self.reconfigured()

    def reconfigured(self) -> None:
        counts = (self.extractor.invalid, self.extractor.dropped) if hasattr(self, "extractor") else (0, 0)
        self.extractor = ModelExtractor(
            self.backend if self.config.server in self.ctx.backends else None,  # type: ignore[arg-type]
            model=self.config.model,
            instruction=self.config.instruction,
            max_tokens=self.config.max_tokens,
            owner=self.name,
            adapter=self.extraction_adapter,
            adapter_prompt=adapter_messages,
            invalid=counts[0],
            dropped=counts[1],
        )

    def extraction_adapter(self) -> str:
        """The extraction LoRA to use now ("" = the base model): read at every message, so promoting
        or rolling back one takes effect at the next; only where the embedded engine serves the bot."""
        setting = self.ctx.config.memory.extraction_adapter
        if not setting or self.ctx.config.server_named(self.config.server).kind != "embedded":
            return ""
        return resolve_served(EXTRACTION_ADAPTERS, setting)

    @property
    def invalid_outputs(self) -> int:
        return self.extractor.invalid

    @property
    def dropped_outputs(self) -> int:
        return self.extractor.dropped

    @property
    def write_scope(self) -> str | None:
        """Where this bot's memories go: None means it may not write any."""
        if "user" in self.config.memory.write:
            return "user"
        if "bot" in self.config.memory.write:
            return "bot"
        return None

    async def _conversation(self, conversation: str) -> "Conversation":
        """The conversation (its id, owner and room never change: kept for the next turn)."""
        conv = self._convs.get(conversation)
        if conv is None:
            conv = await self.ctx.conversations.get_conversation(conversation)
            self._convs[conversation] = conv
            if len(self._convs) > CONVERSATIONS_KEPT:
                self._convs.popitem(last=False)
        else:
            self._convs.move_to_end(conversation)
        return conv

    # -- handlers -----------------------------------------------------------------
    async def on_route(self, ev: Route) -> None:
        if self.name in ev.targets and ev.turn:
            # acknowledged when ingested; delivered again (its worker died) it is ingested again, and the
            # store keeps each note and fact once (same content: sources merged, MemoryStore._insert)
            self.tasks.spawn(self._ingest(ev), name=f"ingest:{ev.turn}", receipt=self.held())

    async def on_reply_end(self, ev: ReplyEnd) -> None:
        # a reply is noted only where memory needs no consent: it may repeat what the person said
        if ev.status != "complete" or not ev.text or self.write_scope is None or self.ctx.config.memory.consent != "always":
            return
        self.tasks.spawn(self._note_reply(ev), name=f"note:{ev.message_id}")

    async def _note_reply(self, ev: ReplyEnd) -> None:
        conv = await self._conversation(ev.conversation)
        if conv.room:
            return  # a room's replies belong to everyone in it: no one person's memory
        # the same per-user lock as ingestion: notes are written in message order,
        # each indexed with the one before it as context
        async with self._serial.setdefault(conv.user_id, asyncio.Lock()):
            # the reply as stored now, not as it was sent: a forget or a delete since then wins
            try:
                stored, previous = await asyncio.gather(
                    self.ctx.conversations.get_message(ev.message_id),
                    self.ctx.memories.latest_raw(conv.user_id, ev.conversation),
                )
            except NotFound:
                return
            text = stored.content
            if not text or stored.status == "replaced":  # the person asked for it again: not something shoal said
                return
            # embedding takes a while: the note is written only if the reply still reads
            # the same when it is stored (checked in the write's own transaction)
            await self.ctx.memories.add_many(
                [
                    NewMemory(
                        conv.user_id,
                        "raw",
                        text,
                        sources=[ev.message_id],
                        method=f"reply by {ev.bot}",
                        conversation_id=ev.conversation,
                        bot=self.name if self.write_scope == "bot" else None,
                        before=previous.text if previous else None,
                        previous=previous.id if previous else None,
                        verbatim_of=ev.message_id,
                    )
                ]
            )

    async def on_recall_query(self, q: RecallQuery) -> RecallResult:
        """Memories the asking bot may read: the user's ("user" scope) and its own ("bot" scope).

        In a room only what was said in that room is recalled: everyone there
        heard it, and no one's private memories reach the others.
        """
        try:
            asker = self.ctx.config.bot(q.bot) if q.bot else self.config
        except ShoalError:
            return RecallResult()
        scopes = set(asker.memory.read)
        if not scopes:
            return RecallResult()
        bots: list[str | None] = ([None] if "user" in scopes else []) + ([asker.name] if "bot" in scopes else [])
        room = await self._room_scope(q.conversation)
        found = await self.ctx.memories.search(
            q.user_id, q.text, limit=q.limit, bots=bots, exclude_raw_from=q.visible, wait_for_vectors=False,
            conversation=room,
        )
        items = [item(m) for m in found]
        # --- edge hook (issue 16): observations and facts of the edge nodes granted to this
        # user, by node, place and time ("what happened in the garage last night?"); [] unless
        # [edge.hub] is enabled. Own tables and grants: see shoal/edge/recall.py.
        if "user" in scopes and room is None:  # a room is shared: no one's granted nodes in it
            from shoal.edge.recall import recall_items

            items = await recall_items(self.ctx.conversations.db, self.ctx.config, q.user_id, q.text, limit=min(q.limit, 3)) + items
        return RecallResult(items=items)

    async def on_facts_query(self, q: FactsQuery) -> FactsResult:
        """The person's current facts, as far as the asking bot may read them (in a room: said there)."""
        try:
            asker = self.ctx.config.bot(q.bot) if q.bot else self.config
        except ShoalError:
            return FactsResult()
        scopes = set(asker.memory.read)
        bots = ([None] if "user" in scopes else []) + ([asker.name] if "bot" in scopes else [])
        if not bots:
            return FactsResult()
        room = await self._room_scope(q.conversation)
        facts = [
            m for m in await self.ctx.memories.facts(q.user_id)
            if m.bot in bots and (room is None or m.conversation_id == room)
        ]
        return FactsResult(items=[item(m) for m in facts])

    async def _room_scope(self, conversation: str | None) -> str | None:
        """The conversation recall is confined to: the room itself when it is one, else None (all of the user's)."""
        if not conversation:
            return None
        try:
            conv = await self._conversation(conversation)
        except ShoalError:
            return None
        return conv.id if conv.room else None

    async def on_consent_decision(self, d: ConsentDecision) -> Ack:
        stored = await self.ctx.memories.settle_pending(d.pending_ids, approve=d.approved)
        if not d.approved:
            await self.ctx.memories.decline(d.conversation, d.pending_ids)
        log.info("memory consent in %s: %s %s (%s)", d.conversation, "stored" if d.approved else "dropped", d.pending_ids, d.reason)
        await self.emit(MemoryConsent(conversation=d.conversation, pending_ids=d.pending_ids, approved=d.approved, reason=d.reason))
        for m, old in stored:
            await self.emit(MemoryWrite(conversation=d.conversation, item=item(m, old.id if old else None)))
        return Ack(detail=f"{len(stored)} stored")

    # -- ingestion ------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _turn(self, conversation: str, message_id: str) -> AsyncIterator[tuple[Conversation, Message, str, Memory | None]]:
        """(conversation, message, whose it is, their latest note), under that person's lock.

        A fact belongs to the person who said it (in a room, one of several people). Outside a room that
        is the owner, known before the message is read: the message and the note before it are read at
        once (over the mesh: one round trip), in the owner's turn order.
        """
        store = self.ctx.conversations
        conv = await self._conversation(conversation)
        msg: Message | None = None
        if not conv.room:
            async with self._serial.setdefault(conv.user_id, asyncio.Lock()):
                msg, previous = await asyncio.gather(
                    store.get_message(message_id), self.ctx.memories.latest_raw(conv.user_id, conv.id)
                )
                if (msg.user_id or conv.user_id) == conv.user_id:
                    yield conv, msg, conv.user_id, previous
                    return
        if msg is None:
            msg = await store.get_message(message_id)
        user_id = msg.user_id or conv.user_id
        async with self._serial.setdefault(user_id, asyncio.Lock()):
            yield conv, msg, user_id, await self.ctx.memories.latest_raw(user_id, conv.id)

    async def _ingest(self, ev: Route) -> None:
        assert ev.turn is not None
        scope = self.write_scope
        if scope is None:
            await self.emit(MemoryDone(conversation=ev.conversation, turn=ev.turn))
            return
        cfg = self.ctx.config.memory
        async with self._turn(ev.conversation, ev.turn) as (conv, msg, user_id, previous):
            result = await ingest(
                self.ctx.memories,
                user_id=user_id,
                conversation_id=conv.id,
                message_id=msg.id,
                text=msg.content,
                previous=previous,
                extractor=self.extractor if cfg.extract_with_model and self.extractor.backend else None,
                consent=cfg.consent,
                bot=self.name if scope == "bot" else None,
            )
            written = []
            if result.raw is not None:
                written.append(result.raw.id)
                await self.emit(MemoryWrite(conversation=conv.id, turn=ev.turn, item=item(result.raw)))
            for cand, reason in result.rejected:
                await self.emit(
                    MemoryRejected(
                        conversation=conv.id,
                        turn=ev.turn,
                        candidate={"attribute": cand.attribute, "value": cand.value, "method": cand.method},
                        reason=reason,
                    )
                )
            shown = [p for p in result.proposed if p["kind"] == "fact"]
            if shown:
                await self.emit(
                    MemoryProposed(
                        conversation=conv.id,
                        turn=ev.turn,
                        pending=[{k: p[k] for k in ("id", "attribute", "value", "text")} for p in shown],
                    )
                )
            for m, old in result.facts:
                written.append(m.id)
                await self.emit(MemoryWrite(conversation=conv.id, turn=ev.turn, item=item(m, old.id if old else None)))
            recalled = await self._bearing_on(
                user_id, msg.content, exclude={m.id for m in [result.raw] if m} | set(written), source=msg.id,
                conversation=conv.id if conv.room else None,
            )
            await self.emit(MemoryDone(conversation=conv.id, turn=ev.turn, written=written, recalled=recalled))
        if cfg.crush_after and not conv.room and cfg.consent == "always":
            try:
                await self._crush(conv.id, user_id)
            except ShoalError as exc:
                log.warning("could not summarise %s: %s", conv.id, exc)

    async def _bearing_on(
        self, user_id: str, text: str, *, exclude: set[str], source: str, conversation: str | None = None
    ) -> list[MemoryItem]:
        """Older facts that share a content word with this message or are close to it (in a room: said there)."""
        if not keywords(text):
            return []
        found = await self.ctx.memories.search(
            user_id, text, limit=5, kinds=("fact",), bots=[None], exclude=exclude, exclude_sources=[source],
            conversation=conversation,
        )
        return [item(m) for m in found if "keyword" in m.why or m.similarity >= BEARING_SIMILARITY][:3]

    # -- crushing -------------------------------------------------------------------
    async def _crush(self, conversation: str, user_id: str) -> None:
        """Summarise messages that have scrolled out of the conversation bot's history."""
        cfg = self.ctx.config.memory
        window = max((b.history for b in self.ctx.config.bots_with_role("conversation")), default=12)
        summary, older = await self.ctx.conversations.scrolled_out(conversation, window)
        if len(older) < cfg.crush_after:
            return
        text = await self.summarise(older)
        ids = [r["id"] for r in older]
        m, _ = await self.ctx.memories.add(
            user_id, "summary", text, sources=ids, method="crush", conversation_id=conversation,
            bot=self.name if self.write_scope == "bot" else None,
        )
        running = (summary + " " + text).strip()
        if len(running) > cfg.summary_chars:
            # keep the most recent part whole: cut at a sentence boundary
            cut = running[-cfg.summary_chars :]
            running = cut[cut.find(". ") + 2 :] if ". " in cut else cut
        await self.ctx.conversations.set_summary(conversation, running, until=ids[-1])
        await self.emit(MemoryWrite(conversation=conversation, item=item(m)))

    async def summarise(self, rows: list[Any]) -> str:
        """A short summary grounded in the messages; an extractive one if the model's is not."""
        transcript = "\n".join(f"{r['role']}: {r['content']}" for r in rows)
        source_words = keywords(transcript)
        try:
            out = await self.complete(
                self.request(
                    [
                        ChatMessage("system", "Summarise the conversation below in two or three short sentences. Only state what was said."),
                        ChatMessage("user", transcript[-6000:]),
                    ],
                    max_tokens=120,
                    temperature=0.0,
                )
            )
            kept = [
                s.strip()
                for s in re.split(r"(?<=[.!?])\s+", out.text)
                if keywords(s) and len(keywords(s) & source_words) / len(keywords(s)) >= 0.7
            ]
        except ShoalError:
            kept = []
        if kept:
            return " ".join(kept)
        said = [r["content"].strip() for r in rows if r["role"] == "user"]
        return "The user said: " + " / ".join(s[:160] for s in said)
