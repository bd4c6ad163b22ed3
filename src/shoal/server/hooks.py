"""Webhooks for alarm bots: ``POST /hooks/<name>``.

The caller authenticates with an API token (``Authorization: Bearer …``,
made with `shoal tokens create`), names one of *their* conversations, and
the alarm bot ``<name>`` delivers the payload there — and only there; the
primary injects it as a system message. A bad token is 401, a conversation
that is not the caller's is 404 like a missing one.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from shoal.errors import NotFound
from shoal.server.auth import current_user
from shoal.server.permissions import require
from shoal.store.conversations import User

router = APIRouter()


class HookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conversation: str = Field(min_length=1, max_length=64)
    text: str = Field(min_length=1, max_length=4000, description="what happened, in a sentence")
    data: dict[str, Any] = Field(default_factory=dict, description="anything else, kept with the event")


@router.post("/hooks/{name}", tags=["hooks"], summary="An outside event for an alarm bot")
async def hook(name: str, body: HookIn, request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    swarm = request.app.state.swarm
    bot = next((b for b in swarm.config.bots if b.name == name and b.role == "alarm" and b.enabled), None)
    if bot is None:
        raise NotFound(f"no alarm named '{name}'", hint="alarms are [[bots]] with role = \"alarm\" in shoal.toml")
    require(user, bot, "chat")
    await swarm.fire_alarm(name, body.conversation, user.id, body.text, body.data)
    return {"delivered": True, "conversation": body.conversation, "hook": name}
