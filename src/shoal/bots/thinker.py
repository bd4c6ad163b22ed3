"""The thinker: background thoughts about the conversation, streamed live.

The primary routes a turn here; the thinker streams a thought at background
priority, keeps it in a live buffer (``is_thinking()``, "what are you
thinking about?") and publishes it when done.

A new turn may arrive while a thought about an older one is still running.
What happens then is the bot's ``interrupt`` policy, and every step of it is
an event in the headspace stream:

* ``terminate`` (default): the stale thought is cancelled, a new one starts;
* ``queue``: the turn waits (``thought.queued``) and starts when the thoughts
  before it end, in order;
* ``spawn``: another thought starts alongside, up to ``max_thoughts``; beyond
  that the oldest is culled;
* ``merge``: the running thought is stopped and its partial text folded, with
  the new turn, into one resubmitted thought (``merged_from``).

With ``monologue_rounds`` the finished thought goes on as a background talk
with the primary (``monologue.step`` events), bounded in rounds and tokens;
its conclusion is what the thought ends with.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

from shoal.errors import GenerationCancelled, ShoalError
from shoal.runtime.bot import Bot
from shoal.runtime.mesh import Receipt, current_receipt
from shoal.runtime.messages import (
    Ack,
    CancelThought,
    MonologuePrompt,
    MonologueReply,
    MonologueStep,
    Route,
    Scrub,
    StatusQuery,
    StatusResult,
    ThinkerStatus,
    ThoughtDelta,
    ThoughtEnd,
    ThoughtQueued,
    ThoughtStart,
)
from shoal.store.ids import new_id
from shoal.types import CancelToken, ChatMessage, Priority

THINK_PROMPT = (
    "Before anyone answers, think privately about the user's last message. "
    "In two or three sentences: what do they want, how do they feel, and what would help them next?"
)


MERGE_PROMPT = (
    "You were thinking about an earlier message when the user said more. "
    "Your unfinished thought was:\n{partial}\n\nFold it and the new message into one thought."
)


@dataclass
class Thought:
    id: str
    conversation: str
    turn: str | None
    reason: str = ""
    merged_from: list[str] = field(default_factory=list)
    turns: list[str] = field(default_factory=list)
    partial: str = ""
    cancel: CancelToken = field(default_factory=CancelToken)
    parts: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    task: asyncio.Task[None] | None = None
    #: the status this thought ends with if it is stopped (cancelled, culled, merged)
    stop_status: str = "cancelled"
    #: older thoughts this one replaces, stopped once its start is announced, so the
    #: journal always shows the newer thought starting before the stale one ends
    replaces: list[tuple["Thought", str]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.parts)


class ThinkerBot(Bot):
    role: ClassVar[str] = "thinker"
    priority: ClassVar[Priority] = Priority.THINKING
    subscribes: ClassVar[tuple[str, ...]] = ("conv.*.route",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._live: dict[str, list[Thought]] = {}  # conversation -> running thoughts, oldest first
        self._queued: dict[str, deque[tuple[Route, Receipt | None]]] = {}
        self._last: dict[str, Thought] = {}

    # -- state ------------------------------------------------------------------
    def is_thinking(self, conversation: str | None = None) -> bool:
        if conversation is None:
            return any(self._live.values())
        return bool(self._live.get(conversation))

    def status(self, conversation: str | None = None) -> list[ThinkerStatus]:
        """What the thinker is thinking about: the live buffers, or the last thought."""
        out = []
        convs = [conversation] if conversation else sorted(set(self._live) | set(self._last))
        for conv in convs:
            live = self._live.get(conv) or []
            # a thought that has only just started (no words yet) does not hide the last one
            # ("what are you thinking about?" starts a thought of its own)
            worded = [t for t in live if t.text.strip()]
            last = [self._last[conv]] if conv in self._last else []
            shown = worded or last or live
            if not shown:
                out.append(ThinkerStatus(bot=self.name, thinking=False, conversation=conv))
            for t in shown:
                out.append(
                    ThinkerStatus(
                        bot=self.name,
                        thinking=t in live,
                        conversation=conv,
                        thought_id=t.id,
                        text=t.text,
                        started=t.started,
                    )
                )
        return out

    # -- handlers -----------------------------------------------------------------
    async def on_route(self, ev: Route) -> None:
        if self.name not in ev.targets:
            return
        receipt = current_receipt.get()
        orphan: str | None = None
        if receipt is not None and receipt.redelivered:
            done, orphan = await self._earlier_thought(ev)
            if done:
                return  # another instance (a worker that died before acknowledging) finished it
        conv = ev.conversation
        running = self._live.setdefault(conv, [])
        queue = self._queued.setdefault(conv, deque())
        policy = self.config.interrupt
        reason = ev.reasons.get(self.name, "")
        held = self.held()  # the route is acknowledged when its thought ends
        if not running and not queue:
            self._start(ev, reason, receipt=held, thought_id=orphan)
        elif policy == "queue":
            queue.append((ev, held))
            await self.emit(ThoughtQueued(conversation=conv, turn=ev.turn, position=len(queue)))
        elif policy == "terminate":
            stale = list(running)
            for t in stale:
                t.stop_status = "cancelled"
            self._start(ev, reason, receipt=held, thought_id=orphan).replaces = [(t, "a newer turn arrived") for t in stale]
        elif policy == "spawn":
            new = self._start(ev, reason, receipt=held, thought_id=orphan)
            while len(running) > self.config.max_thoughts:
                oldest = running.pop(0)
                oldest.stop_status = "culled"
                new.replaces.append((oldest, f"more than {self.config.max_thoughts} thoughts at once"))
        else:  # merge
            folded = list(running)
            for t in folded:
                t.stop_status = "merged"
                t.cancel.cancel("merged into a newer thought")
            running.clear()
            partial = "\n".join(t.text.strip() for t in folded if t.text.strip())
            turns = [x for t in folded for x in (t.turns or [t.turn]) if x]
            self._start(ev, reason, merged_from=[t.id for t in folded], partial=partial, turns=turns, receipt=held, thought_id=orphan)

    async def _earlier_thought(self, ev: Route) -> tuple[bool, str | None]:
        """A route delivered again: did an instance of this thinker finish its thought, or leave one unfinished?

        The store answers (it survives the worker that died): (True, None) when a thought about the turn
        is done; else (False, id) of the one a dead or stopped instance left (thinking, cancelled by its
        shutdown, or ended as an error when the server saw it die), which the new thought takes over —
        the turn keeps one thought in the store.
        """
        if not ev.turn:
            return False, None
        live = {t.id for ts in self._live.values() for t in ts}
        rows = await self.ctx.conversations.thoughts(ev.conversation, turn_id=ev.turn, bot=self.name)
        mine = [t for t in rows if t["id"] not in live]
        if any(t["status"] == "done" for t in mine):
            return True, None
        left = [t["id"] for t in mine if t["status"] in ("thinking", "error", "cancelled")]
        return False, (left[-1] if left else None)

    def _start(
        self, ev: Route, reason: str, *, merged_from: list[str] | None = None, partial: str = "", turns: list[str] | None = None,
        receipt: Receipt | None = None, thought_id: str | None = None,
    ) -> Thought:
        thought = Thought(
            id=thought_id or new_id(),
            conversation=ev.conversation,
            turn=ev.turn,
            reason=reason,
            merged_from=merged_from or [],
            partial=partial,
            turns=[*(turns or []), *([ev.turn] if ev.turn else [])],
        )
        self._live.setdefault(ev.conversation, []).append(thought)
        # the route is acknowledged when the thought ends (a worker killed mid-thought never does: it comes again)
        thought.task = self.tasks.spawn(self._think(thought), name=f"think:{thought.id}", receipt=receipt)
        return thought

    async def on_scrub(self, msg: Scrub) -> Ack:
        """Forgotten words leave the live and last thought buffers too (the stored thoughts are scrubbed by the eraser)."""
        from shoal.memory.forget import scrub, scrub_pattern

        pattern = scrub_pattern(msg.terms)
        n = 0
        for conv in set(self._live) | set(self._last):
            if msg.conversations and conv not in msg.conversations:
                continue
            for t in [*self._live.get(conv, []), *([self._last[conv]] if conv in self._last else [])]:
                text = scrub(t.text, pattern)
                if text != t.text:
                    t.parts[:] = [text]
                    t.partial = scrub(t.partial, pattern)
                    n += 1
        return Ack(count=n)

    async def on_status_query(self, msg: StatusQuery) -> StatusResult:
        return StatusResult(statuses=self.status(msg.conversation))

    async def on_cancel_thought(self, msg: CancelThought) -> Ack:
        n = 0
        for thoughts in list(self._live.values()):
            for t in list(thoughts):
                if (msg.conversation in (None, t.conversation)) and (msg.thought_id in (None, t.id)):
                    t.stop_status = "cancelled"
                    t.cancel.cancel("cancelled on request")
                    n += 1
        if msg.thought_id is None:  # cancelling a conversation's thinking drops its queue too
            for conv, queue in self._queued.items():
                if msg.conversation not in (None, conv):
                    continue
                dropped = list(queue)
                queue.clear()
                for route, receipt in dropped:
                    # the primary waits for this thinker on that turn: tell it the thought will not come
                    tid = new_id()
                    start = ThoughtStart(
                        conversation=conv, turn=route.turn, thought_id=tid, reason="cancelled while queued",
                        policy=self.config.interrupt, turns=[route.turn] if route.turn else [],
                    )
                    await self.emit(start)
                    await self.emit(ThoughtEnd(conversation=conv, turn=route.turn, thought_id=tid, text="", status="cancelled"))
                    if receipt is not None:
                        receipt.release()
                n += len(dropped)
        return Ack(ok=n > 0, detail=f"cancelled {n} thought(s)", count=n)

    # -- thinking -------------------------------------------------------------------
    async def _think(self, thought: Thought) -> None:
        conv = thought.conversation
        store = self.ctx.conversations
        # the history is read while the thought's row is written (over the mesh: one round trip, not two)
        reading = asyncio.ensure_future(store.history(conv, limit=max(1, self.config.history)))
        try:
            await store.save_thought(
                thought.id, conv, bot=self.name, turn_id=thought.turn, text="", status="thinking", started_at=thought.started
            )
        except BaseException:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
            raise
        await self.emit(
            ThoughtStart(
                conversation=conv,
                turn=thought.turn,
                thought_id=thought.id,
                reason=thought.reason,
                policy=self.config.interrupt,
                merged_from=thought.merged_from,
                turns=thought.turns,
            )
        )
        for old, why in thought.replaces:
            old.cancel.cancel(why)
        status, error = "done", None
        try:
            history = await reading
            if (solved := await self.solver_for(history)) is not None:
                thought.parts.append(solved)
                await self.emit(ThoughtDelta(conversation=conv, turn=thought.turn, thought_id=thought.id, text=solved))
            else:
                messages = self.build_messages(history, partial=thought.partial)
                await self._generate(thought, messages, self.config.max_tokens, live=True)
                if self.config.monologue_rounds and thought.text.strip():
                    await self._monologue(thought, messages)
        except GenerationCancelled:
            status = thought.stop_status
        except asyncio.CancelledError:
            thought.cancel.cancel("shutting down")
            await self._end(thought, "cancelled", None)
            raise
        except ShoalError as exc:
            status, error = "error", str(exc)
        await self._end(thought, status, error)

    async def _generate(self, thought: Thought, messages: list[ChatMessage], max_tokens: int, *, live: bool) -> str:
        req = self.request(messages, max_tokens=max_tokens)
        req.cancel = thought.cancel
        # a live generation streams into the thought's buffer ("what are you thinking about?")
        parts: list[str] = thought.parts if live else []
        delta = (
            (lambda text: ThoughtDelta(conversation=thought.conversation, turn=thought.turn, thought_id=thought.id, text=text))
            if live
            else None
        )
        await self.stream_text(req, parts, delta)
        return "".join(parts)

    async def _monologue(self, thought: Thought, messages: list[ChatMessage]) -> None:
        """Talk the thought over with the primary, bounded in rounds and tokens; end on a conclusion."""
        primaries = self.ctx.config.bots_with_role("primary")
        if not primaries:
            return
        budget = self.config.monologue_tokens
        lines = [f"{self.name}: {thought.text.strip()}"]
        conclusion = thought.text.strip()
        for rnd in range(1, self.config.monologue_rounds + 1):
            if budget <= 16 or thought.cancel.cancelled:
                break
            reply = await self.ask(
                primaries[0].name,
                MonologuePrompt(conversation=thought.conversation, thought=conclusion, transcript=lines),
                timeout=self.ctx.config.routing.settle_timeout,
            )
            if not isinstance(reply, MonologueReply) or reply.done or not reply.text.strip():
                break
            question = reply.text.strip()
            budget -= max(1, len(question) // 4)
            lines.append(f"{primaries[0].name}: {question}")
            await self.emit(
                MonologueStep(
                    conversation=thought.conversation, turn=thought.turn, thought_id=thought.id,
                    speaker=primaries[0].name, round=rnd, text=question,
                )
            )
            follow = [
                *messages,
                ChatMessage("assistant", conclusion),
                ChatMessage("user", f"{question}\nAnswer in one or two sentences."),
            ]
            answer = (await self._generate(thought, follow, min(self.config.max_tokens, budget), live=False)).strip()
            budget -= max(1, len(answer) // 4)
            if not answer:
                break
            lines.append(f"{self.name}: {answer}")
            conclusion = answer
            await self.emit(
                MonologueStep(
                    conversation=thought.conversation, turn=thought.turn, thought_id=thought.id,
                    speaker=self.name, round=rnd, text=answer,
                )
            )
        if conclusion != thought.text.strip():
            thought.parts = [thought.text.rstrip(), "\n\n", conclusion]

    async def _end(self, thought: Thought, status: str, error: str | None) -> None:
        conv = thought.conversation
        running = self._live.get(conv, [])
        if thought in running:
            running.remove(thought)
        self._last[conv] = thought
        text = thought.text.strip()
        await self.ctx.conversations.save_thought(
            thought.id,
            conv,
            bot=self.name,
            turn_id=thought.turn,
            text=text,
            status=status,
            started_at=thought.started,
            ended_at=time.time(),
        )
        await self.emit(
            ThoughtEnd(
                conversation=conv,
                turn=thought.turn,
                thought_id=thought.id,
                text=text,
                status=status,  # type: ignore[arg-type]
                error=error,
            )
        )
        queue = self._queued.get(conv)
        if queue and not running and self._consumer is not None:
            nxt, receipt = queue.popleft()
            self._start(nxt, nxt.reasons.get(self.name, ""), receipt=receipt)

    async def solver_for(self, history: list[Any]) -> str | None:
        """Hook: a thought worked out by a solver instead of the chat model (a µLM by search), or None.

        Only when ``[ulm]`` lists this bot in ``solver_bots`` (shoal.ulm.solver); a failed solver falls
        back to thinking as usual, it never ends the thought in an error.
        """
        if not self.ctx.config.ulm.solver_run:
            return None
        from shoal.ulm.solver import thought_for

        last = next((m.content for m in reversed(history) if m.role == "user" and m.content), "")
        try:
            return await thought_for(self.ctx.config, self.name, last)
        except ShoalError:
            return None

    def build_messages(self, history: list[Any], *, partial: str = "") -> list[ChatMessage]:
        system = self.config.instruction or "You think quietly about the conversation."
        lines = [f"{m.role}: {m.content}" for m in history if m.role in ("user", "assistant") and m.content]
        transcript = "\n".join(lines[-self.config.history :] if self.config.history else lines[-1:])
        ask = THINK_PROMPT if not partial else MERGE_PROMPT.format(partial=partial) + "\n" + THINK_PROMPT
        return [
            ChatMessage("system", system),
            ChatMessage("user", f"Conversation so far:\n{transcript}\n\n{ask}"),
        ]
