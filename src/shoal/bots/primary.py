"""The primary: routes every user turn, gathers results, injects what matters.

Routing is by config rules first (seed 000: "farm messages based on a config
rather than pure LLM"): the ``routing.always`` bots get every turn, and each
matching rule adds its targets. When every target has reported (or
``settle_timeout`` passed) the primary reflects:

* a recalled memory that bears on this turn becomes an interjection
  ("ooh, I remember ...");
* a thought is offered to the model, which must answer in a JSON schema
  whether it is worth telling the user and how; the note must be grounded in
  the thought (retry once, then drop and count);
* a wanted profile slot (say, the user's name) that is still unknown becomes
  a one-time note for the next reply.

Then it publishes ``TurnSettled``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from shoal.bots.conversation import THINKING_QUESTION
from shoal.config import RoutingRule
from shoal.errors import ShoalError
from shoal.memory.store import keywords
from shoal.runtime.bot import Bot
from shoal.runtime.messages import (
    ConsentDecision,
    Injection,
    MemoryDone,
    MemoryProposed,
    MemoryItem,
    Route,
    ThoughtEnd,
    TurnSettled,
    UserTurn,
)
from shoal.store.ids import new_id
from shoal.types import ChatMessage, Priority

log = logging.getLogger(__name__)

_QUESTION = re.compile(
    r"\?\s*$|^\s*(?:who|what|when|where|why|how|which|can|could|would|should|is|are|do|does|did|will)\b", re.I | re.M
)
_PLAN = re.compile(
    r"\b(?:plan|planning|should i|help me|how (?:do|can|should) i|i need to|i want to|i'm going to|"
    r"i am going to|going to|todo|to-do|schedule|decide|organi[sz]e|prepare)\b",
    re.I,
)
_PERSONAL = re.compile(r"\b(?:i|i'm|i am|my|me|mine|i've|i'd|i'll)\b", re.I)

REFLECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "share": {"type": "boolean"},
        "note": {"type": "string", "maxLength": 200},
    },
    "required": ["share", "note"],
}

SLOT_QUESTIONS = {
    "name": "The user's name is unknown. Ask for their name.",
    "location": "You do not know where the user lives. Ask where they live.",
}


def rule_matches(rule: RoutingRule, text: str) -> bool:
    if rule.when == "always":
        return True
    if rule.when == "question":
        return bool(_QUESTION.search(text))
    if rule.when == "plan":
        return bool(_PLAN.search(text))
    if rule.when == "personal":
        return bool(_PERSONAL.search(text))
    if rule.when == "long":
        return len(text.split()) >= rule.min_words
    if rule.when == "regex":
        assert rule.pattern is not None
        return re.search(rule.pattern, text, re.I) is not None
    return False


@dataclass
class TurnState:
    turn: str
    conversation: str
    user_id: str
    text: str
    waiting: set[str]
    targets: list[str]
    thoughts: list[ThoughtEnd] = field(default_factory=list)
    recalled: list[MemoryItem] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    settled: bool = False
    timer: asyncio.Task[None] | None = None


class PrimaryBot(Bot):
    role: ClassVar[str] = "primary"
    priority: ClassVar[Priority] = Priority.PRIMARY
    subscribes: ClassVar[tuple[str, ...]] = ("conv.*.user", "conv.*.thought", "conv.*.memory")

    #: turns a question for consent may wait for an answer before it lapses
    CONSENT_PATIENCE = 3

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._turns: dict[str, TurnState] = {}
        self._mentioned: dict[str, set[str]] = {}  # conversation -> memory ids already brought up
        self._slots_asked: dict[str, set[str]] = {}
        self.invalid_outputs = 0
        self.dropped_outputs = 0
        self._consent_waits: dict[str, int] = {}  # conversation -> turns since we asked

    # -- consent ------------------------------------------------------------------
    async def on_memory_proposed(self, ev: MemoryProposed) -> None:
        """Ask the user, through the conversation bot, whether these facts may be kept."""
        facts = "; ".join(f'"{p["text"]}"' for p in ev.pending)
        state = self._turns.get(ev.turn or "")
        self._consent_waits[ev.conversation] = 0
        await self.inject_into(
            ev.conversation,
            ev.turn,
            f"Ask the user whether you may remember this: {facts}. They can answer yes or no.",
            reason="consent:ask",
            mode="next_reply" if state and not state.settled else "interject",
        )

    async def _check_consent(self, ev: UserTurn) -> None:
        pending = await self.ctx.memories.pending(ev.conversation)
        if not pending:
            return
        ids = [p["id"] for p in pending]
        answer = consent_answer(ev.text)
        waited = self._consent_waits.get(ev.conversation, 0) + 1
        self._consent_waits[ev.conversation] = waited
        if answer is None and waited < self.CONSENT_PATIENCE:
            return
        approved = bool(answer)
        reason = {True: "the user agreed", False: "the user declined", None: "no answer"}[answer]
        memory_bots = self.ctx.config.bots_with_role("memory")
        if memory_bots:
            await self.ask(
                memory_bots[0].name,
                ConsentDecision(conversation=ev.conversation, pending_ids=ids, approved=approved, reason=reason),
                timeout=30,
            )
        self._consent_waits.pop(ev.conversation, None)

    # -- routing ------------------------------------------------------------------
    def route(self, text: str) -> tuple[list[str], dict[str, str]]:
        cfg = self.ctx.config.routing
        enabled = {b.name for b in self.ctx.config.bots if b.enabled}
        targets: list[str] = []
        reasons: dict[str, str] = {}
        for name in cfg.always:
            if name in enabled and name not in targets:
                targets.append(name)
                reasons[name] = "always"
        # asking what the thinkers are thinking must not replace the thought
        meta = bool(THINKING_QUESTION.search(text))
        for rule in cfg.rules:
            if not rule_matches(rule, text):
                continue
            for name in rule.send:
                if name in targets or name not in enabled:
                    continue
                if meta and self.ctx.config.bot(name).role == "thinker":
                    continue
                targets.append(name)
                reasons[name] = f"rule '{rule.name}'"
        return targets, reasons

    async def on_user_turn(self, ev: UserTurn) -> None:
        if self.ctx.config.memory.consent == "ask":
            await self._check_consent(ev)
        targets, reasons = self.route(ev.text)
        state = TurnState(
            turn=ev.message_id,
            conversation=ev.conversation,
            user_id=ev.user_id,
            text=ev.text,
            waiting=set(targets),
            targets=targets,
        )
        self._turns[ev.message_id] = state
        await self.emit(Route(conversation=ev.conversation, turn=ev.message_id, targets=targets, reasons=reasons))
        if not state.waiting:
            self.tasks.spawn(self._settle(state), name=f"settle:{state.turn}")
            return
        state.timer = self.tasks.spawn(self._timeout(state), name=f"timeout:{state.turn}")

    async def on_thought_end(self, ev: ThoughtEnd) -> None:
        state = self._turns.get(ev.turn or "")
        if state is None or state.settled:
            return
        if ev.status == "done" and ev.text:
            state.thoughts.append(ev)
        self._arrived(state, ev.bot)

    async def on_memory_done(self, ev: MemoryDone) -> None:
        state = self._turns.get(ev.turn or "")
        if state is None or state.settled:
            return
        state.recalled.extend(ev.recalled)
        self._arrived(state, ev.bot)

    def _arrived(self, state: TurnState, bot: str) -> None:
        state.waiting.discard(bot)
        if not state.waiting:
            if state.timer:
                state.timer.cancel()
            self.tasks.spawn(self._settle(state), name=f"settle:{state.turn}")

    async def _timeout(self, state: TurnState) -> None:
        await asyncio.sleep(self.ctx.config.routing.settle_timeout)
        if not state.settled:
            self.tasks.spawn(self._settle(state, timed_out=True), name=f"settle:{state.turn}")

    # -- reflection -----------------------------------------------------------------
    async def _settle(self, state: TurnState, *, timed_out: bool = False) -> None:
        if state.settled:
            return
        state.settled = True
        late = sorted(state.waiting) if timed_out else []
        try:
            await self._reflect(state)
        except ShoalError as exc:
            log.warning("primary could not reflect on %s: %s", state.turn, exc)
        finally:
            self._turns.pop(state.turn, None)
            await self.emit(
                TurnSettled(conversation=state.conversation, turn=state.turn, waited_for=state.targets, timed_out=late)
            )

    async def _reflect(self, state: TurnState) -> None:
        mentioned = self._mentioned.setdefault(state.conversation, set())
        for mem in state.recalled:
            if mem.id in mentioned or mem.kind != "fact":
                continue
            mentioned.add(mem.id)
            await self.inject(
                state,
                f'You remember the user once said: "{mem.text}". Mention it if it fits.',
                reason=f"recalled memory {mem.id}",
                mode="interject",
            )
            break
        for thought in state.thoughts:
            note = await self._worth_sharing(state, thought)
            if note:
                await self.inject(state, note, reason=f"thought {thought.thought_id}", mode="next_reply")
        await self._ask_for_slots(state)

    async def _worth_sharing(self, state: TurnState, thought: ThoughtEnd) -> str | None:
        messages = [
            ChatMessage(
                "system",
                (self.config.instruction or "")
                + " Decide if the thought below holds something useful to tell the user."
                " If yes, write it as a short note using words from the thought.",
            ),
            ChatMessage("user", f"User said: {state.text}\nThought: {thought.text}"),
        ]
        for _attempt in range(2):
            req = self.request(messages, json_schema=REFLECT_SCHEMA, temperature=0.0)
            out = await self.complete(req)
            try:
                data = json.loads(out.text)
                share, note = bool(data["share"]), str(data["note"]).strip()
            except (ValueError, KeyError, TypeError):
                self.invalid_outputs += 1
                continue
            if not share or not note:
                return None
            if grounded_in(note, thought.text + " " + state.text):
                return note
            self.invalid_outputs += 1
        self.dropped_outputs += 1
        return None

    async def _ask_for_slots(self, state: TurnState) -> None:
        wanted = self.ctx.config.memory.wanted_slots
        if not wanted or "user" not in self.config.memory.read:
            return
        asked = self._slots_asked.setdefault(state.conversation, set())
        if not asked:
            for inj in await self.ctx.conversations.injections(state.conversation):
                if inj["reason"].startswith("slot:"):
                    asked.add(inj["reason"][5:])
        facts = await self.ctx.memories.facts(state.user_id)
        known = {f.attribute for f in facts}
        for slot in wanted:
            if slot in known or slot in asked:
                continue
            asked.add(slot)
            text = SLOT_QUESTIONS.get(slot, f"You do not know the user's {slot}. Ask about it.")
            await self.inject(state, text, reason=f"slot:{slot}", mode="next_reply")

    async def inject(self, state: TurnState, text: str, *, reason: str, mode: str) -> None:
        await self.inject_into(state.conversation, state.turn, text, reason=reason, mode=mode)

    async def inject_into(self, conversation: str, turn: str | None, text: str, *, reason: str, mode: str) -> None:
        """Leave a system message for the conversation bot (stored, then published)."""
        injection_id = new_id()
        await self.ctx.conversations.add_injection(
            injection_id, conversation, bot=self.name, turn_id=turn, text=text, reason=reason, mode=mode
        )
        await self.emit(
            Injection(
                conversation=conversation,
                turn=turn,
                injection_id=injection_id,
                text=text,
                reason=reason,
                mode=mode,  # type: ignore[arg-type]
            )
        )


_YES = re.compile(
    r"^\W*(?:yes|yeah|yep|yup|sure|ok|okay|of course|go ahead|please do|fine|that's fine|absolutely|definitely|"
    r"you may|you can)\b",
    re.I,
)
_NO = re.compile(
    r"^\W*(?:no|nope|nah|don't|do not|please don't|rather not|i'd rather not|forget it|never)\b", re.I
)


def consent_answer(text: str) -> bool | None:
    """True for a yes, False for a no, None when the message is not an answer."""
    if _NO.search(text):
        return False
    if _YES.search(text):
        return True
    return None


def grounded_in(note: str, source: str, *, share: float = 0.6) -> bool:
    """Most of the note's content words must come from the source."""
    words = keywords(note)
    if not words:
        return False
    src = keywords(source)
    return len(words & src) / len(words) >= share
