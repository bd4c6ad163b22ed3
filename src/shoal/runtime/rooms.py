"""Rooms (seed 003 "entities"): who answers, and how often each persona may speak.

The primary asks the ``RoomAnalyser`` which personas answer a message in a
room. The rules, in order:

1. personas *mentioned* by name (``Sage``, ``@sage``) answer;
2. otherwise personas whose *topics* appear in the message answer, best
   match first;
3. otherwise a *question* is answered by the persona that spoke least
   recently;
4. otherwise each persona answers with its ``response_probability``.

At most ``answers_per_turn`` personas answer one message, and a persona
over any of its rate limits (per minute / hour / day) is skipped, with the
reason recorded in the route. The ``RateLimiter`` is the single allocator of
speaking slots: it reserves a slot when it grants one, so concurrent turns
cannot overshoot a limit, and it is seeded from the stored messages so the
limits hold across restarts.
"""

from __future__ import annotations

import random
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shoal.config import BotConfig, RoomConfig

if TYPE_CHECKING:
    from shoal.store.conversations import ConversationStore

#: a question: ends in "?" or a line starts with a question word (the primary's `question` rule too)
QUESTION = re.compile(
    r"\?\s*$|^\s*(?:who|what|when|where|why|how|which|can|could|would|should|is|are|do|does|did|will)\b", re.I | re.M
)
_WORD = re.compile(r"[a-z0-9']+")

DAY = 86_400.0


class RateLimiter:
    """Sliding-window limits per persona; grants reserve a slot at once.

    A limit is about the messages people see, so a slot counts by when its
    message was stored (``sent``), and a slot whose reply is still being
    written counts as now, whenever it was granted: replies take different
    times to write, and counting them by grant time let ten messages land in
    one minute under a limit of nine.
    """

    def __init__(self, store: "ConversationStore") -> None:
        self.store = store
        self._times: dict[str, deque[float]] = {}
        #: slots granted whose reply is not stored yet
        self._pending: dict[str, list[float]] = {}

    async def _load(self, bot: str) -> deque[float]:
        if bot not in self._times:
            since = time.time() - DAY
            self._times[bot] = deque(await self.store.bot_message_times(None, bot, since))
        return self._times[bot]

    async def blocked(self, persona: BotConfig, at: float | None = None) -> str | None:
        """The limit that stops ``persona`` speaking now, or None."""
        t = time.time() if at is None else at
        times = await self._load(persona.name)
        while times and times[0] < t - DAY:
            times.popleft()
        pending = len(self._pending.get(persona.name, ()))
        for name, seconds, limit in persona.rate.windows():
            used = sum(1 for x in times if x > t - seconds) + pending
            if used >= limit:
                return f"{name} limit {limit} reached"
        return None

    async def reserve(self, persona: BotConfig, at: float | None = None) -> float | None:
        """Take a speaking slot now; the time it was taken at (to give it back), or None when over a limit."""
        t = time.time() if at is None else at
        if await self.blocked(persona, t):
            return None
        self._pending.setdefault(persona.name, []).append(t)
        return t

    def release(self, persona: str, at: float) -> None:
        """Give back a slot a persona did not use (its reply failed)."""
        pending = self._pending.get(persona)
        if pending and at in pending:
            pending.remove(at)

    def sent(self, persona: str, at: float, when: float | None = None) -> None:
        """The reply of the slot granted at ``at`` is stored (``when``: now): it counts by when that was."""
        self.release(persona, at)
        self._times.setdefault(persona, deque()).append(time.time() if when is None else when)


@dataclass
class Decision:
    answer: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    #: personas that would have answered but are over a limit
    limited: dict[str, str] = field(default_factory=dict)


class RoomAnalyser:
    def __init__(self, limiter: RateLimiter, *, seed: int | None = None) -> None:
        self.limiter = limiter
        self.rng = random.Random(seed)
        self._last_spoke: dict[str, float] = {}
        #: (persona, turn) -> when its slot was reserved, until it has spoken
        self._slots: dict[tuple[str, str | None], float] = {}

    def spoke(self, persona: str) -> None:
        self._last_spoke[persona] = time.monotonic()

    async def take_slot(self, persona: BotConfig, turn: str | None) -> bool:
        """Reserve a speaking slot for ``persona``'s answer to ``turn`` (False: over a limit)."""
        at = await self.limiter.reserve(persona)
        if at is None:
            return False
        self._slots[(persona.name, turn)] = at
        self.spoke(persona.name)
        return True

    def answered(self, persona: str, turn: str | None, *, ok: bool) -> None:
        """The persona's reply to ``turn`` is done: a failed one gives its slot back."""
        at = self._slots.pop((persona, turn), None)
        if at is not None:
            self.limiter.sent(persona, at) if ok else self.limiter.release(persona, at)

    async def decide(self, room: RoomConfig, personas: list[BotConfig], text: str, turn: str | None = None) -> Decision:
        words = set(_WORD.findall(text.lower()))
        low = text.lower()
        candidates: list[tuple[str, str]] = []
        mentioned = [p for p in personas if p.name.lower() in words or f"@{p.name.lower()}" in low]
        if mentioned:
            candidates = [(p.name, "mentioned") for p in mentioned]
        else:
            scored = []
            for p in personas:
                hits = [t for t in p.topics if t.lower() in words or (" " in t and t.lower() in low)]
                if hits:
                    scored.append((len(hits), p.name, hits[0]))
            if scored:
                scored.sort(key=lambda x: (-x[0], x[1]))
                candidates = [(name, f"topic '{hit}'") for _, name, hit in scored]
            elif QUESTION.search(text):
                order = sorted(personas, key=lambda p: (self._last_spoke.get(p.name, 0.0), p.name))
                candidates = [(p.name, "question, spoke least recently") for p in order]
            else:
                for p in personas:
                    if self.rng.random() < p.response_probability:
                        candidates.append((p.name, f"chance {p.response_probability:g}"))
        by_name = {p.name: p for p in personas}
        out = Decision()
        for name, reason in candidates:
            if len(out.answer) >= room.answers_per_turn:
                break
            limit = await self.limiter.blocked(by_name[name])
            if limit:
                out.limited[name] = limit
                continue
            if await self.take_slot(by_name[name], turn):
                out.answer.append(name)
                out.reasons[name] = reason
        return out
