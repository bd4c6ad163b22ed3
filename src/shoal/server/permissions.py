"""Who may do what with a bot.

Principals in config: ``"users"`` (anyone signed in), ``"admins"``, or a user
name. Admins may always do everything.
"""

from __future__ import annotations

from typing import Literal

from shoal.config import BotConfig
from shoal.errors import PermissionDenied
from shoal.store.conversations import User

Capability = Literal["chat", "see_thoughts", "configure"]


def allowed(user: User, principals: list[str]) -> bool:
    if user.is_admin:
        return True
    for p in principals:
        if p in ("users", "*") or p == user.name or (p == "admins" and user.is_admin):
            return True
    return False


def can(user: User, bot: BotConfig, capability: Capability) -> bool:
    if capability == "chat":
        return allowed(user, bot.chat_principals)
    if capability == "see_thoughts":
        return allowed(user, bot.access.see_thoughts)
    return allowed(user, bot.access.configure)


def require(user: User, bot: BotConfig, capability: Capability) -> None:
    if not can(user, bot, capability):
        verb = {"chat": "chat with", "see_thoughts": "see the thoughts of", "configure": "configure"}[capability]
        raise PermissionDenied(
            f"you may not {verb} bot '{bot.name}'",
            hint="an admin can grant it in shoal.toml ([bots.access]) or in the web UI's bot settings",
        )
