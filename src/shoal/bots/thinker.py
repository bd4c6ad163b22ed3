"""The thinker: background thoughts about the conversation, streamed live.

The primary routes a turn here; the thinker streams a thought at background
priority, keeps it in a live buffer (``is_thinking()``, "what are you
thinking about?") and publishes it when done. When a new turn arrives while
it is still thinking about an older one, the stale thought is terminated.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from shoal.errors import GenerationCancelled, ShoalError
from shoal.runtime.bot import Bot
from shoal.runtime.messages import (
    Ack,
    CancelThought,
    Route,
    StatusQuery,
    StatusResult,
    ThinkerStatus,
    ThoughtDelta,
    ThoughtEnd,
    ThoughtStart,
)
from shoal.store.ids import new_id
from shoal.types import CancelToken, ChatMessage, Priority

THINK_PROMPT = (
    "Before anyone answers, think privately about the user's last message. "
    "In two or three sentences: what do they want, how do they feel, and what would help them next?"
)


@dataclass
class Thought:
    id: str
    conversation: str
    turn: str | None
    cancel: CancelToken = field(default_factory=CancelToken)
    parts: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    task: asyncio.Task[None] | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)


class ThinkerBot(Bot):
    role: ClassVar[str] = "thinker"
    priority: ClassVar[Priority] = Priority.THINKING
    subscribes: ClassVar[tuple[str, ...]] = ("conv.*.route",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._live: dict[str, Thought] = {}
        self._last: dict[str, Thought] = {}

    # -- state ------------------------------------------------------------------
    def is_thinking(self, conversation: str | None = None) -> bool:
        if conversation is None:
            return bool(self._live)
        return conversation in self._live

    def status(self, conversation: str | None = None) -> list[ThinkerStatus]:
        """What the thinker is thinking about: the live buffer, or the last thought."""
        out = []
        convs = [conversation] if conversation else sorted(set(self._live) | set(self._last))
        for conv in convs:
            live = self._live.get(conv)
            t = live or self._last.get(conv)
            out.append(
                ThinkerStatus(
                    bot=self.name,
                    thinking=live is not None,
                    conversation=conv,
                    thought_id=t.id if t else None,
                    text=t.text if t else "",
                    started=t.started if t else None,
                )
            )
        return out

    # -- handlers -----------------------------------------------------------------
    async def on_route(self, ev: Route) -> None:
        if self.name not in ev.targets:
            return
        stale = self._live.get(ev.conversation)
        if stale is not None:
            stale.cancel.cancel("a newer turn arrived")
        thought = Thought(id=new_id(), conversation=ev.conversation, turn=ev.turn)
        self._live[ev.conversation] = thought
        thought.task = self.tasks.spawn(self._think(thought, ev.reasons.get(self.name, "")), name=f"think:{thought.id}")

    async def on_status_query(self, msg: StatusQuery) -> StatusResult:
        return StatusResult(statuses=self.status(msg.conversation))

    async def on_cancel_thought(self, msg: CancelThought) -> Ack:
        n = 0
        for t in list(self._live.values()):
            if (msg.conversation in (None, t.conversation)) and (msg.thought_id in (None, t.id)):
                t.cancel.cancel("cancelled on request")
                n += 1
        return Ack(ok=n > 0, detail=f"cancelled {n} thought(s)")

    # -- thinking -------------------------------------------------------------------
    async def _think(self, thought: Thought, reason: str) -> None:
        conv = thought.conversation
        store = self.ctx.conversations
        await store.save_thought(
            thought.id, conv, bot=self.name, turn_id=thought.turn, text="", status="thinking", started_at=thought.started
        )
        await self.emit(ThoughtStart(conversation=conv, turn=thought.turn, thought_id=thought.id, reason=reason))
        status, error = "done", None
        try:
            history = await store.history(conv, limit=max(1, self.config.history))
            req = self.request(self.build_messages(history))
            req.cancel = thought.cancel
            async for chunk in self.stream(req):
                if chunk.text:
                    thought.parts.append(chunk.text)
                    await self.emit(ThoughtDelta(conversation=conv, turn=thought.turn, thought_id=thought.id, text=chunk.text))
        except GenerationCancelled:
            status = "cancelled"
        except asyncio.CancelledError:
            thought.cancel.cancel("shutting down")
            status = "cancelled"
            await self._end(thought, status, None)
            raise
        except ShoalError as exc:
            status, error = "error", str(exc)
        await self._end(thought, status, error)

    async def _end(self, thought: Thought, status: str, error: str | None) -> None:
        if self._live.get(thought.conversation) is thought:
            del self._live[thought.conversation]
        self._last[thought.conversation] = thought
        text = thought.text.strip()
        await self.ctx.conversations.save_thought(
            thought.id,
            thought.conversation,
            bot=self.name,
            turn_id=thought.turn,
            text=text,
            status=status,
            started_at=thought.started,
            ended_at=time.time(),
        )
        await self.emit(
            ThoughtEnd(
                conversation=thought.conversation,
                turn=thought.turn,
                thought_id=thought.id,
                text=text,
                status=status,  # type: ignore[arg-type]
                error=error,
            )
        )

    def build_messages(self, history: list[Any]) -> list[ChatMessage]:
        system = self.config.instruction or "You think quietly about the conversation."
        lines = [f"{m.role}: {m.content}" for m in history if m.role in ("user", "assistant") and m.content]
        transcript = "\n".join(lines[-self.config.history :] if self.config.history else lines[-1:])
        return [
            ChatMessage("system", system),
            ChatMessage("user", f"Conversation so far:\n{transcript}\n\n{THINK_PROMPT}"),
        ]
