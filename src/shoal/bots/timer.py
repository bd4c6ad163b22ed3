"""The timer bot: periodic events per conversation.

Its first timer is a silence monitor: ``silence_after`` seconds after the
last reply (nothing is silent while a reply is being written) with nothing new, it publishes a
``timer.tick`` the primary turns into a nudge. It nudges at most
``max_nudges`` times per silence; the next user message re-arms it.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from shoal.runtime.bot import Bot
from shoal.runtime.messages import ReplyEnd, ReplyStart, TimerTick, UserTurn
from shoal.types import Priority


class TimerBot(Bot):
    role: ClassVar[str] = "timer"
    priority: ClassVar[Priority] = Priority.PRIMARY
    subscribes: ClassVar[tuple[str, ...]] = ("conv.*.user", "conv.*.reply")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timers: dict[str, asyncio.Task[None]] = {}
        self._nudges: dict[str, int] = {}
        self._last_turn: dict[str, str | None] = {}

    async def on_user_turn(self, ev: UserTurn) -> None:
        self._nudges[ev.conversation] = 0
        self._last_turn[ev.conversation] = ev.turn
        self._arm(ev.conversation)

    async def on_reply_start(self, ev: ReplyStart) -> None:
        # nobody is silent while a reply is being written
        old = self._timers.pop(ev.conversation, None)
        if old is not None:
            old.cancel()

    async def on_reply_end(self, ev: ReplyEnd) -> None:
        # the clock restarts when a reply ends; a spent silence (nudged max_nudges times) stays spent
        if ev.conversation in self._nudges and self._nudges[ev.conversation] < self.config.max_nudges:
            self._arm(ev.conversation)

    def _arm(self, conversation: str) -> None:
        if self.config.silence_after <= 0:
            return
        old = self._timers.pop(conversation, None)
        if old is not None:
            old.cancel()
        self._timers[conversation] = self.tasks.spawn(self._wait(conversation), name=f"silence:{conversation}")

    async def _wait(self, conversation: str) -> None:
        await asyncio.sleep(self.config.silence_after)
        self._timers.pop(conversation, None)
        if self._nudges.get(conversation, 0) >= self.config.max_nudges:
            return
        self._nudges[conversation] = self._nudges.get(conversation, 0) + 1
        await self.emit(
            TimerTick(
                conversation=conversation,
                turn=self._last_turn.get(conversation),
                timer="silence",
                seconds=self.config.silence_after,
            )
        )
