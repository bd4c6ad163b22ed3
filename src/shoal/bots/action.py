"""Hot action bots: short-lived bots spawned for one quick task.

A ``[[bots]]`` entry with ``role = "action"`` is a template, not a running
bot. When the primary routes a turn to it, the ``ActionPool`` spawns an
instance (``<template>-<n>``) that does the one task — the template's
instruction applied to the message — publishes ``action.start`` and
``action.end``, and is gone. At most ``max_running`` instances of a template
run at once; more wait their turn.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import TYPE_CHECKING, ClassVar

from shoal.config import BotConfig
from shoal.errors import GenerationCancelled, NotFound, ShoalError
from shoal.runtime.bot import Bot, BotContext
from shoal.runtime.messages import ActionEnd, ActionStart
from shoal.store.ids import new_id
from shoal.types import ChatMessage, Priority

if TYPE_CHECKING:
    from shoal.tools.registry import ToolOutcome

log = logging.getLogger(__name__)


class ActionBot(Bot):
    role: ClassVar[str] = "action"
    priority: ClassVar[Priority] = Priority.THINKING

    def __init__(self, config: BotConfig, ctx: BotContext, template: str) -> None:
        super().__init__(config, ctx)
        self.template = template

    async def run(self, conversation: str, turn: str | None, task: str) -> ActionEnd:
        action_id = new_id()
        await self.emit(ActionStart(conversation=conversation, turn=turn, action_id=action_id, template=self.template, task=task))
        text, status, error, interject = "", "done", None, False
        try:
            outcome = await self._use_tool(conversation, turn, task) if self.config.tools else None
            if outcome is not None:
                # the result itself, not the small model's retelling of it: the conversation bot words it
                text, interject = tool_note(outcome), True
                if not outcome.ok:
                    status, error = "error", outcome.error
            elif self.config.tools and not self.config.instruction:
                pass  # a tools-only action with no tool to call has nothing to say
            else:
                req = self.request(
                    [
                        ChatMessage("system", self.config.instruction or "Do the task in one short sentence."),
                        ChatMessage("user", task),
                    ]
                )
                text = (await self.complete(req)).text.strip()
        except GenerationCancelled:
            status = "cancelled"
        except ShoalError as exc:
            status, error = "error", str(exc)
        end = ActionEnd(
            conversation=conversation, turn=turn, action_id=action_id, template=self.template,
            text=text, status=status, error=error, interject=interject,  # type: ignore[arg-type]
        )
        await self.emit(end)
        return end

    async def _use_tool(self, conversation: str, turn: str | None, task: str) -> "ToolOutcome | None":
        """One constrained tool call for the task (tools.calling), as the person who asked."""
        from shoal.tools.calling import call_tool_for

        conv = await self.ctx.conversations.get_conversation(conversation)
        if conv.room is not None:
            return None  # everyone in a room sees its events: one person's memories would reach the others
        user_id = ""
        if turn:
            try:
                user_id = (await self.ctx.conversations.get_message(turn)).user_id or ""
            except NotFound:
                pass
        if not user_id:
            user_id = conv.user_id
        return await call_tool_for(self, conversation, turn, user_id, task)


def tool_note(outcome: "ToolOutcome") -> str:
    """The result in words a small model can repeat (it would copy raw JSON into the reply)."""
    if not outcome.ok:
        return f"the {outcome.tool} tool could not help ({outcome.status}: {outcome.error})"
    v = outcome.value
    if isinstance(v, dict) and "result" in v:
        said = str(v["result"])
    elif isinstance(v, dict):
        said = ", ".join(f"{k} {x}" for k, x in v.items() if k not in ("iso", "timezone"))
    elif isinstance(v, list):
        said = "; ".join(str(x.get("text", x)) if isinstance(x, dict) else str(x) for x in v[:3]) or "nothing"
    else:
        said = outcome.result
    return f"{outcome.tool} returned {said[:300]}"


class ActionPool:
    """Spawns action bots from their templates, capped per template."""

    def __init__(self, ctx: BotContext) -> None:
        self.ctx = ctx
        self._caps: dict[str, asyncio.Semaphore] = {}
        self._count = itertools.count(1)
        self.running: dict[str, ActionBot] = {}
        self.peak: dict[str, int] = {}

    async def run(self, template: BotConfig, conversation: str, turn: str | None, task: str) -> ActionEnd:
        cap = self._caps.setdefault(template.name, asyncio.Semaphore(template.max_running))
        async with cap:
            name = f"{template.name}-{next(self._count)}"
            cfg = template.model_copy(update={"name": name})
            bot = ActionBot(cfg, self.ctx, template.name)
            self.running[name] = bot
            now = sum(1 for b in self.running.values() if b.template == template.name)
            self.peak[template.name] = max(self.peak.get(template.name, 0), now)
            await bot.start()
            try:
                return await bot.run(conversation, turn, task)
            finally:
                await bot.stop()
                del self.running[name]
