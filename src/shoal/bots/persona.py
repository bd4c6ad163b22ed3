"""Personas: bots with a character of their own that speak in rooms (seed 003).

A persona answers when the primary's room analyser routes a message to it
(the analyser has already reserved a slot under the persona's rate limits),
or when asked to ``Speak`` while two personas talk to each other. It sees the
room's recent history with every speaker's name, and answers in its own
voice on its own server and model.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from shoal.bots.conversation import clean_reply
from shoal.errors import GenerationCancelled, ShoalError
from shoal.runtime.bot import Bot
from shoal.runtime.messages import ReplyDelta, ReplyEnd, ReplyStart, Route, Speak, Spoken
from shoal.store.ids import new_id
from shoal.types import CancelToken, ChatMessage, Priority

log = logging.getLogger(__name__)


class PersonaBot(Bot):
    role: ClassVar[str] = "persona"
    priority: ClassVar[Priority] = Priority.FOREGROUND
    subscribes: ClassVar[tuple[str, ...]] = ("conv.*.route",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock: dict[str, asyncio.Lock] = {}

    async def on_route(self, ev: Route) -> None:
        if self.name not in ev.targets or not ev.reasons.get(self.name, "").startswith("room:"):
            return
        self.tasks.spawn(self.speak(ev.conversation, ev.turn), name=f"persona:{ev.conversation}")

    async def on_speak(self, msg: Speak) -> Spoken:
        return await self.speak(msg.conversation, msg.turn)

    async def speak(self, conversation: str, turn: str | None) -> Spoken:
        # one line at a time per room: a persona does not talk over itself
        async with self._lock.setdefault(conversation, asyncio.Lock()):
            return await self._speak(conversation, turn)

    async def _speak(self, conversation: str, turn: str | None) -> Spoken:
        store = self.ctx.conversations
        history = await store.history(conversation, limit=max(1, self.config.history))
        req = self.request(self.build_messages(history))
        req.cancel = CancelToken()
        message_id = new_id()
        await self.emit(ReplyStart(conversation=conversation, turn=turn, message_id=message_id))
        parts: list[str] = []
        status, error = "complete", None
        try:
            await self.stream_text(
                req, parts, lambda text: ReplyDelta(conversation=conversation, turn=turn, message_id=message_id, text=text)
            )
        except GenerationCancelled:
            status = "interrupted"
        except asyncio.CancelledError:
            req.cancel.cancel("shutting down")
            raise
        except ShoalError as exc:
            status, error = "error", str(exc)
            log.warning("persona %s failed in %s: %s", self.name, conversation, exc)
        text = clean_reply("".join(parts), (self.name,)) or ("…" if status == "complete" else "")
        if text:
            await store.add_message(conversation, "assistant", text, bot=self.name, status=status, reply_to=turn, message_id=message_id)
        if self.ctx.rooms is not None:
            # counted by when its message was stored; a reply that failed did not use its slot: given back
            self.ctx.rooms.answered(self.name, turn, ok=status != "error" and bool(text))
        await self.emit(
            ReplyEnd(
                conversation=conversation, turn=turn, message_id=message_id, text=text,
                status=status, error=error,  # type: ignore[arg-type]
            )
        )
        return Spoken(message_id=message_id, text=text, status=status)

    def build_messages(self, history: list[Any]) -> list[ChatMessage]:
        system = (self.config.instruction or f"You are {self.name}.") + (
            f" You are {self.name}, one of several voices in a group chat. Answer in one or two sentences, in character."
        )
        lines = []
        for m in history:
            if not m.content or m.role == "system":
                continue
            who = m.bot or ("someone" if m.role == "user" else "another bot")
            lines.append(f"{who}: {m.content}")
        return [
            ChatMessage("system", system),
            ChatMessage("user", "The chat so far:\n" + "\n".join(lines) + f"\n\nWrite {self.name}'s next message."),
        ]
