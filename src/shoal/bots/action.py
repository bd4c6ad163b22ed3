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
from typing import ClassVar

from shoal.config import BotConfig
from shoal.errors import GenerationCancelled, ShoalError
from shoal.runtime.bot import Bot, BotContext
from shoal.runtime.messages import ActionEnd, ActionStart
from shoal.store.ids import new_id
from shoal.types import ChatMessage, Priority

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
        text, status, error = "", "done", None
        try:
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
            text=text, status=status, error=error,  # type: ignore[arg-type]
        )
        await self.emit(end)
        return end


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
