"""The conversation bot: the voice the person talks to.

Each reply is built from the bot's instruction, what the memory bot recalls
about the user, any system injections the primary has left, and the recent
history; it streams at foreground priority. A new user turn interrupts a
reply still streaming in the same conversation (latest wins); the partial
reply is kept, marked interrupted. An injection in ``interject`` mode makes
the bot speak unprompted when it is not already replying.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, ClassVar

from shoal.errors import GenerationCancelled, ShoalError
from shoal.runtime.bot import Bot
from shoal.runtime.messages import (
    Ack,
    BotError,
    Injection,
    MemoryItem,
    RecallQuery,
    RecallResult,
    ReplyDelta,
    ReplyEnd,
    ReplyStart,
    StatusQuery,
    StatusResult,
    StopReply,
    UserTurn,
)
from shoal.store.ids import new_id
from shoal.types import CancelToken, ChatMessage, Priority

log = logging.getLogger(__name__)

THINKING_QUESTION = re.compile(
    r"\bwhat(?:'re| are| r)? (?:you|u) (?:thinking|pondering|mulling)|\bwhat'?s on your mind\b", re.I
)


class ConversationBot(Bot):
    role: ClassVar[str] = "conversation"
    priority: ClassVar[Priority] = Priority.FOREGROUND
    subscribes: ClassVar[tuple[str, ...]] = ("conv.*.user", "conv.*.system")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._replies: dict[str, tuple[asyncio.Task[None], CancelToken]] = {}

    # -- handlers ---------------------------------------------------------------
    async def on_user_turn(self, ev: UserTurn) -> None:
        if ev.room:
            return  # in a room the personas answer
        await self._interrupt(ev.conversation, "a new user turn arrived")
        self._start(ev.conversation, ev.user_id, ev.message_id, ev.text, interjection=None)

    async def on_injection(self, ev: Injection) -> None:
        if ev.mode != "interject" or not self.config.interject:
            return  # it waits in the store for the next reply
        if ev.conversation in self._replies:
            return  # the reply in flight will not see it; the next one will
        conv = await self.ctx.conversations.get_conversation(ev.conversation)
        if conv.room:
            return  # in a room the personas speak
        self._start(ev.conversation, conv.user_id, ev.turn, "", interjection=ev)

    async def on_stop_reply(self, msg: StopReply) -> Ack:
        stopped = await self._interrupt(msg.conversation, "stopped by the user")
        return Ack(ok=stopped, detail="stopped" if stopped else "no reply in flight")

    # -- replying ---------------------------------------------------------------
    def _start(self, conversation: str, user_id: str, turn: str | None, text: str, *, interjection: Injection | None) -> None:
        cancel = CancelToken()
        task = self.tasks.spawn(
            self._reply(conversation, user_id, turn, text, cancel, interjection), name=f"reply:{conversation}"
        )
        self._replies[conversation] = (task, cancel)
        task.add_done_callback(lambda t: self._forget(conversation, t))

    def _forget(self, conversation: str, task: asyncio.Task[None]) -> None:
        if self._replies.get(conversation, (None,))[0] is task:
            del self._replies[conversation]

    async def _interrupt(self, conversation: str, reason: str) -> bool:
        entry = self._replies.get(conversation)
        if not entry:
            return False
        task, cancel = entry
        cancel.cancel(reason)
        await asyncio.wait({task}, timeout=10)
        return True

    def replying(self, conversation: str) -> bool:
        return conversation in self._replies

    async def _reply(
        self,
        conversation: str,
        user_id: str,
        turn: str | None,
        text: str,
        cancel: CancelToken,
        interjection: Injection | None,
    ) -> None:
        message_id = new_id()
        history = await self.ctx.conversations.history(conversation, limit=self.config.history)
        recalled, thinking, summary, (version, evolved) = await asyncio.gather(
            self._recall(user_id, conversation, text or (interjection.text if interjection else ""), [m.id for m in history]),
            self._thinking(conversation, text),
            self.ctx.conversations.summary(conversation),
            self.ctx.conversations.instruction(conversation),
        )
        pending = await self.ctx.conversations.pending_injections(conversation)
        messages = self.build_messages(history, recalled, pending, thinking, interjection, summary, evolved)
        req = self.request(messages)
        req.cancel = cancel
        await self.emit(
            ReplyStart(
                conversation=conversation,
                turn=turn,
                message_id=message_id,
                interjection=interjection is not None,
                recalled=recalled,
                injections=[p["id"] for p in pending],
                summary=summary,
                instruction_version=version,
            )
        )
        parts: list[str] = []
        status, error = "complete", None
        try:
            await self.stream_text(
                req, parts, lambda text: ReplyDelta(conversation=conversation, turn=turn, message_id=message_id, text=text)
            )
        except GenerationCancelled:
            status = "interrupted"
        except asyncio.CancelledError:
            status = "interrupted"
            cancel.cancel("shutting down")
            await self._finish(conversation, turn, message_id, parts, status, None, interjection, pending)
            raise
        except ShoalError as exc:
            status, error = "error", str(exc)
            log.warning("reply in %s failed: %s", conversation, exc)
        await self._finish(conversation, turn, message_id, parts, status, error, interjection, pending)

    async def _finish(
        self,
        conversation: str,
        turn: str | None,
        message_id: str,
        parts: list[str],
        status: str,
        error: str | None,
        interjection: Injection | None,
        pending: list[dict[str, Any]],
    ) -> None:
        text = clean_reply("".join(parts))
        if text or status != "error":
            await self.ctx.conversations.add_message(
                conversation, "assistant", text, bot=self.name, status=status, reply_to=turn, message_id=message_id
            )
        if status == "complete":
            used = [p["id"] for p in pending]
            if interjection is not None:
                used.append(interjection.injection_id)
            await self.ctx.conversations.consume_injections(used, message_id)
        await self.emit(
            ReplyEnd(
                conversation=conversation,
                turn=turn,
                message_id=message_id,
                text=text,
                status=status,  # type: ignore[arg-type]
                interjection=interjection is not None,
                error=error,
            )
        )
        if error:
            await self.emit(BotError(conversation=conversation, turn=turn, error=error))

    # -- context ----------------------------------------------------------------
    async def _recall(self, user_id: str, conversation: str, text: str, visible: list[str]) -> list[MemoryItem]:
        """Memories relevant to ``text``, not already visible in the history, within the token budget."""
        mem = self.ctx.config.memory
        bots = self.ctx.config.bots_with_role("memory")
        if not bots or mem.recall_limit == 0 or not self.config.memory.read or not text:
            return []
        try:
            result = await self.ask(
                bots[0].name,
                RecallQuery(
                    user_id=user_id,
                    conversation=conversation,
                    text=text,
                    limit=mem.recall_limit,
                    bot=self.name,
                    visible=visible,
                ),
                timeout=mem.recall_timeout,
            )
        except (asyncio.TimeoutError, ShoalError) as exc:
            log.info("recall skipped: %s", exc.__class__.__name__)
            return []
        items = result.items if isinstance(result, RecallResult) else []
        kept, used = [], 0
        for it in items:
            cost = estimate_tokens(it.text) + 3
            if used + cost > mem.recall_budget_tokens:
                break
            kept.append(it)
            used += cost
        return kept

    async def _thinking(self, conversation: str, text: str) -> str:
        """When asked "what are you thinking about?", the thinkers' live buffers."""
        if not text or not THINKING_QUESTION.search(text):
            return ""
        lines = []
        for bot in self.ctx.config.bots_with_role("thinker"):
            try:
                res = await self.ask(bot.name, StatusQuery(conversation=conversation), timeout=1.0)
            except (asyncio.TimeoutError, ShoalError):
                continue
            if isinstance(res, StatusResult):
                for st in res.statuses:
                    if st.text:
                        lines.append(st.text.strip() + (" (still thinking)" if st.thinking else ""))
        return "\n".join(lines) or "(nothing in particular right now)"

    def build_messages(
        self,
        history: list[Any],
        recalled: list[MemoryItem],
        pending: list[dict[str, Any]],
        thinking: str,
        interjection: Injection | None,
        summary: str = "",
        evolved: str = "",
    ) -> list[ChatMessage]:
        system = [self.config.instruction or "You are a helpful assistant."]
        if evolved:
            system.append(evolved)
        if summary:
            system.append(f"Earlier in this conversation: {summary}")
        if recalled:
            system.append("What you remember:")
            system += [render_memory(m) for m in recalled]
        if interjection is not None:
            pending = [p for p in pending if p["id"] != interjection.injection_id]
        if pending:
            system.append("Notes from your background mind (use them if they fit):")
            system += [f"- {p['text']}" for p in pending]
        if thinking:
            system.append(f"Your background thoughts right now: {thinking}")
        messages = [ChatMessage("system", "\n".join(system))]
        for m in history:
            if m.role in ("user", "assistant") and m.content:
                messages.append(ChatMessage(m.role, m.content))
        if interjection is not None:
            messages.append(
                ChatMessage("system", f"Say this to the user now, briefly and in your own words: {interjection.text}")
            )
        return messages


def render_memory(m: MemoryItem) -> str:
    if m.kind == "summary":
        return f"- Earlier: {m.text}"
    if m.method.startswith("reply"):
        return f'- You once said: "{m.text}"'
    return f'- The user said: "{m.text}"'


def estimate_tokens(text: str) -> int:
    """Roughly 4 characters a token for English: enough for budgeting context."""
    return max(1, len(text) // 4)


_ROLE_LEAK = re.compile(r"\n\s*(?:user|assistant|system)\s*:.*$", re.I | re.S)
_SPEAKER_TAG = re.compile(r"^\s*(?:assistant|shoal|bot|ai|[A-Z][a-z]{1,15})\s*:\s+(?=\S)")


def clean_reply(text: str) -> str:
    """Trim what small models add: a speaker tag in front, a forged next turn after."""
    return _SPEAKER_TAG.sub("", _ROLE_LEAK.sub("", text), count=1).strip()
