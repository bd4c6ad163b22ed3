"""Who may do what with a bot, and which events a person may receive.

Principals in config: ``"users"`` (anyone signed in), ``"admins"``, or a user
name. Admins may always do everything.

``visible_event`` is the one rule for what a person may see of a
conversation's events. Every path that hands events to a person applies it:
the websocket (live and replayed), the REST event log, ``shoal chat``, and
the conversation bot itself when it is asked "what are you thinking?". A
thinker's text — its thought stream, the monologue, a note the primary drew
from a thought, a rule proposed from one, a line of the instruction that
came from one — reaches only those allowed ``see_thoughts`` on that thinker.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from shoal.errors import NotFound, PermissionDenied

if TYPE_CHECKING:
    from shoal.config import BotConfig, ShoalConfig
    from shoal.runtime.messages import Event
    from shoal.store.conversations import User

Capability = Literal["chat", "see_thoughts", "configure"]

#: how a line of the evolved instruction that came from a thought starts ("… thought (critic): …")
THOUGHT_LINE = "From a background thought"
_THOUGHT_LINE = re.compile(r"^From a background thought(?: \(([A-Za-z0-9_-]+)\))?:")
HIDDEN_LINE = "From a background thought: (hidden: you may not see this bot's thoughts)"


def allowed(user: "User", principals: list[str]) -> bool:
    if user.is_admin:
        return True
    for p in principals:
        if p in ("users", "*") or p == user.name or (p == "admins" and user.is_admin):
            return True
    return False


def can(user: "User", bot: "BotConfig", capability: Capability) -> bool:
    if capability == "chat":
        return allowed(user, bot.chat_principals)
    if capability == "see_thoughts":
        return allowed(user, bot.access.see_thoughts)
    return allowed(user, bot.access.configure)


def require(user: "User", bot: "BotConfig", capability: Capability) -> None:
    if not can(user, bot, capability):
        verb = {"chat": "chat with", "see_thoughts": "see the thoughts of", "configure": "configure"}[capability]
        raise PermissionDenied(
            f"you may not {verb} bot '{bot.name}'",
            hint="an admin can grant it in shoal.toml ([bots.access]) or in the web UI's bot settings",
        )


def may_see_thoughts_of(user: "User", config: "ShoalConfig", bot_name: str) -> bool:
    """Whether ``user`` may see what bot ``bot_name`` thinks (an unknown bot: admins only)."""
    try:
        bot = config.bot(bot_name)
    except NotFound:
        return user.is_admin
    return can(user, bot, "see_thoughts")


def thought_line(thinker: str, rule: str) -> str:
    """The instruction line holding a rule drawn from ``thinker``'s thought."""
    return f"{THOUGHT_LINE} ({thinker}): {rule}"


def redact_instruction(user: "User", config: "ShoalConfig", text: str) -> str:
    """``text`` with every line drawn from a thought ``user`` may not see replaced by a notice."""
    out = []
    for line in text.splitlines():
        m = _THOUGHT_LINE.match(line)
        if m and not may_see_thoughts_of(user, config, m.group(1) or ""):
            out.append(HIDDEN_LINE)
        else:
            out.append(line)
    return "\n".join(out)


#: kinds whose whole content is a thinker's own text
_THOUGHT_KINDS = ("thought.", "monologue.")


def visible_event(user: "User", config: "ShoalConfig", event: "Event") -> "Event | None":
    """The event as ``user`` may receive it: itself, a redacted copy, or None when it must not reach them."""
    kind = event.kind
    if kind.startswith(_THOUGHT_KINDS):
        return event if may_see_thoughts_of(user, config, event.bot) else None
    if kind == "instruction.proposal":
        thinker = getattr(event, "thinker", "")
        return event if may_see_thoughts_of(user, config, thinker) else None
    if kind == "injection":
        source = getattr(event, "from_bot", "")
        if source and _is_thinker(config, source) and not may_see_thoughts_of(user, config, source):
            return None
        return event
    if kind == "instruction.changed":
        text = getattr(event, "text", "")
        shown = redact_instruction(user, config, text)
        return event if shown == text else event.model_copy(update={"text": shown})
    if kind == "bot.error" and _is_thinker(config, event.bot):
        return event if may_see_thoughts_of(user, config, event.bot) else None
    return event


def _is_thinker(config: "ShoalConfig", name: str) -> bool:
    try:
        return config.bot(name).role == "thinker"
    except NotFound:
        return True  # unknown: treat as private
