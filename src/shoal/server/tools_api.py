"""GET /api/tools: the tool registry as you may see it (docs/tools.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from shoal.server.auth import current_user
from shoal.server.permissions import can
from shoal.store.conversations import User
from shoal.tools.registry import permits

router = APIRouter(prefix="/api", tags=["tools"])


@router.get("/tools", summary="The tools, and which of the bots you may configure may call each")
async def list_tools(request: Request, user: User = Depends(current_user)) -> Any:
    swarm = request.app.state.swarm
    registry = getattr(swarm, "tools", None)
    if registry is None:
        return {"tools": [], "errors": {}}
    mine = [b for b in swarm.config.bots if can(user, b, "configure")]
    return {
        "tools": [
            {**t.spec()["function"], "source": t.source, "bots": [b.name for b in mine if permits(b.tools, t.name)]}
            for t in registry.tools()
        ],
        # what failed to load is for admins: a plugin's error may name paths
        "errors": dict(registry.plugin_errors) if user.is_admin else {},
        "calls": dict(registry.stats) if user.is_admin else {},
    }
