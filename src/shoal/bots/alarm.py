"""The alarm bot: outside events, delivered by an authenticated webhook.

``POST /hooks/<name>`` (see ``shoal.server.hooks``) checks the caller's API
token and that the conversation is theirs, then hands the payload to the
alarm bot named ``<name>``, which publishes an ``alarm`` event in that
conversation — and only there. The primary injects it as a system message.
"""

from __future__ import annotations

from typing import ClassVar

from shoal.runtime.bot import Bot
from shoal.runtime.messages import Ack, Alarm, FireAlarm
from shoal.types import Priority


class AlarmBot(Bot):
    role: ClassVar[str] = "alarm"
    priority: ClassVar[Priority] = Priority.PRIMARY

    async def on_fire_alarm(self, msg: FireAlarm) -> Ack:
        await self.emit(Alarm(conversation=msg.conversation, hook=self.name, text=msg.text, data=msg.data))
        return Ack(ok=True, detail=f"delivered to conversation {msg.conversation}")
