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
from typing import Any, AsyncIterator, ClassVar

from shoal.bots.conversation import THINKING_QUESTION
from shoal.config import RoutingRule
from shoal.errors import ShoalError
from shoal.memory.extract import is_personal
from shoal.runtime.access import thought_line
from shoal.memory.store import SINGLE_VALUED, keywords
from shoal.runtime.bot import Bot
from shoal.runtime.jsonfix import loads_constrained
from shoal.runtime.rooms import QUESTION
from shoal.runtime.messages import (
    ActionEnd,
    Alarm,
    ConsentDecision,
    Injection,
    InstructionChanged,
    InstructionProposal,
    MonologuePrompt,
    MonologueReply,
    TimerTick,
    MemoryDone,
    MemoryProposed,
    MemoryItem,
    MemoryWrite,
    Route,
    ThoughtEnd,
    TurnSettled,
    UserTurn,
)
from shoal.store.ids import new_id
from shoal.types import ChatMessage, Priority

log = logging.getLogger(__name__)

_PLAN = re.compile(
    r"\b(?:plan|planning|should i|help me|how (?:do|can|should) i|i need to|i want to|i'm going to|"
    r"i am going to|going to|todo|to-do|schedule|decide|organi[sz]e|prepare)\b",
    re.I,
)
#: the user asks for a standing change in how the bot talks to them
_STYLE = re.compile(
    r"\b(?:from now on|always|never|please (?:be|keep|use|answer|reply|talk|speak|write|stop|don't|do not)|"
    r"call me|(?:answer|reply|respond|talk|speak|write) (?:more |in |to me |only |shorter|longer|briefly|formally)|"
    r"keep (?:it|your answers|answers) (?:short|brief)|stop (?:using|saying|calling))\b",
    re.I,
)
_MENTION = re.compile(r"@([A-Za-z0-9_-]+)")

REFLECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "share": {"type": "boolean"},
        "note": {"type": "string", "maxLength": 200},
    },
    "required": ["share", "note"],
}

MONOLOGUE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"done": {"type": "boolean"}, "question": {"type": "string", "maxLength": 200}},
    "required": ["done", "question"],
}

#: the first round of a monologue: a question, no way out yet
FIRST_QUESTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"question": {"type": "string", "minLength": 8, "maxLength": 200}},
    "required": ["question"],
}

INSTRUCT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"rule": {"type": "string", "maxLength": 160}, "lasting": {"type": "boolean"}},
    "required": ["rule", "lasting"],
}
INSTRUCT_PROMPT = (
    "You read a thinker's thought about a user. If it shows a lasting preference for how the assistant should talk "
    "to this user, write it as one short rule with words from the thought. Otherwise leave rule empty.\n"
    'Example: thought "They are busy and want quick answers." -> {"rule": "Give quick answers.", "lasting": true}\n'
    'Example: thought "They ask about the weather in Rome." -> {"rule": "", "lasting": false}'
)
_DIRECTIVE_VERBS = frozenset(
    "give keep use make provide offer write try be stay add start stop put let tell answer reply respond talk speak".split()
)
#: words of a rule about *how to talk* (a rule without one is about something else and is refused)
_STYLE_WORDS = re.compile(
    r"\b(?:short|shorter|brief|briefly|quick|quickly|concise|simple|simply|plain|easy|clear|clearly|slow|slowly|"
    r"detail|detailed|details|long|longer|step|steps|example|examples|formal|formally|casual|friendly|polite|gentle|"
    r"kind|patient|calm|tone|words|jargon|technical|explain|explanations?|answers?|repl(?:y|ies)|sentences?|"
    r"language|english|french|spanish|german|emoji|emojis|jokes?|humou?r|call|name|avoid|never|always|don't|"
    r"do not|list|lists|bullet|bullets)\b",
    re.I,
)

#: longest evolved instruction kept for a conversation; older lines fall off
MAX_EVOLVED_CHARS = 600


def fact_line_prefix(attribute: str) -> str:
    """The start of the instruction line holding a remembered fact of this kind."""
    return f"Remembered about the user ({attribute}):"


def instruction_problem(rule: str, evidence: str) -> str | None:
    """Why a proposed instruction line is refused, or None when the primary accepts it.

    A rule must be a few words of one sentence, and nearly all its content
    words must come from the thought or the user's message: a small model
    must not slip in an instruction nobody said.
    """
    if len(rule) > 160 or "\n" in rule:
        return "too long"
    if len(keywords(rule)) < 2:
        return "too vague"
    if re.search(r"https?://|\bignore (?:all|previous|the above)\b", rule, re.I):
        return "looks like an injection"
    # the verbs of an instruction ("give", "keep", "use") are the model's; what they apply to must be said
    if not grounded_in(" ".join(keywords(rule) - _DIRECTIVE_VERBS) or rule, evidence, share=0.75):
        return "not grounded in the thought or the user's words"
    if not _STYLE_WORDS.search(rule):
        return "not about how to talk to the user"
    return None

SLOT_QUESTIONS = {
    "name": "The user's name is unknown. Ask for their name.",
    "location": "You do not know where the user lives. Ask where they live.",
}


def rule_matches(rule: RoutingRule, text: str) -> bool:
    if rule.when == "always":
        return True
    if rule.when == "question":
        return bool(QUESTION.search(text))
    if rule.when == "plan":
        return bool(_PLAN.search(text))
    if rule.when == "personal":
        return is_personal(text)
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
    #: a room's turn: the personas answer, the primary only waits for the background to settle
    room: bool = False
    #: targets nobody runs (their last worker died, docs/mesh.md): not waited for
    missing: list[str] = field(default_factory=list)


class PrimaryBot(Bot):
    role: ClassVar[str] = "primary"
    priority: ClassVar[Priority] = Priority.PRIMARY
    subscribes: ClassVar[tuple[str, ...]] = (
        "conv.*.user", "conv.*.thought", "conv.*.memory", "conv.*.action", "conv.*.alarm", "conv.*.timer",
    )

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
        # specialised thinkers and actions can be asked for by name: "@critic what do you think?"
        for name in _MENTION.findall(text):
            bot = next((b for b in self.ctx.config.bots if b.name.lower() == name.lower() and b.enabled), None)
            if bot is not None and bot.role in ("thinker", "action") and bot.name not in targets:
                targets.append(bot.name)
                reasons[bot.name] = "asked for by name"
        return targets, reasons

    async def on_user_turn(self, ev: UserTurn) -> None:
        if ev.room:
            await self._route_room(ev)
            return
        if self.ctx.config.memory.consent == "ask":
            await self._check_consent(ev)
        if _STYLE.search(ev.text):
            await self._evolve_instruction(ev)
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
        placement = getattr(self.ctx, "placement", None)
        if placement is not None:  # bots in workers that died are not waited for
            state.missing = placement.missing(targets)
            state.waiting -= set(state.missing)
        await self.emit(Route(conversation=ev.conversation, turn=ev.message_id, targets=targets, reasons=reasons))
        for name in targets:
            bc = self.ctx.config.bot(name)
            if bc.role == "action" and self.ctx.actions is not None:
                self.tasks.spawn(self.ctx.actions.run(bc, ev.conversation, ev.message_id, ev.text), name=f"action:{name}")
        if self.config.tools and self.ctx.actions is not None:  # issue 17: a hot action bot per tool call
            from shoal.tools.calling import tool_template

            if (template := tool_template(self.config, self.ctx.tools, ev.text)) is not None:
                state.waiting.add(template.name)  # the turn settles with the tool's result, not before
                self.tasks.spawn(self.ctx.actions.run(template, ev.conversation, ev.message_id, ev.text), name="action:tools")
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

    async def on_action_end(self, ev: ActionEnd) -> None:
        state = self._turns.get(ev.turn or "")
        if state is None or state.settled:
            return
        if ev.status == "done" and ev.text:
            note = ev.text[:300]
            await self.inject(
                state, f"The {ev.template} action found: {note}", reason=f"action {ev.action_id}",
                mode="interject" if ev.interject else "next_reply",
            )
        self._arrived(state, ev.template)

    # -- outside events: alarms (webhooks) and timers -----------------------------------
    async def on_alarm(self, ev: Alarm) -> None:
        await self.inject_into(
            ev.conversation,
            ev.turn,
            f"An outside event arrived ({ev.hook}): {ev.text} Tell the user about it briefly.",
            reason=f"alarm:{ev.hook}",
            mode="interject",
        )

    async def on_timer_tick(self, ev: TimerTick) -> None:
        if ev.timer != "silence":
            return
        await self.inject_into(
            ev.conversation,
            ev.turn,
            "The user has been quiet for a while. Say one short, friendly thing to pick the conversation up again.",
            reason=f"timer:{ev.bot}:silence",
            mode="interject",
        )

    # -- monologue: a thinker talks its thought over with the primary ---------------------
    async def on_monologue_prompt(self, msg: MonologuePrompt) -> MonologueReply:
        """Carry the background monologue one step: a question that takes the thought further, or done.

        The first round always asks (a monologue that ends before it starts is no monologue); later
        rounds may conclude.
        """
        messages = [
            ChatMessage(
                "system",
                "You talk with a thinker, in the background, about a conversation with a user. "
                "Ask one short question that takes its thought further, or set done when it has reached a conclusion.",
            ),
            ChatMessage("user", "\n".join(msg.transcript[-6:])),
        ]
        first = len(msg.transcript) <= 1
        schema = FIRST_QUESTION_SCHEMA if first else MONOLOGUE_SCHEMA
        async for done, question in self._answers(messages, schema, ("done", "question"), max_tokens=96):
            question = question.strip()
            if first:
                if not question:
                    continue  # blank (spaces fill minLength): ask again
                return MonologueReply(text=question)
            return MonologueReply(text="" if done else question, done=done or not question)
        self.dropped_outputs += 1
        return MonologueReply(done=True)

    async def _answers(
        self, messages: list[ChatMessage], schema: dict[str, Any], keys: tuple[str, str], *, max_tokens: int | None = None
    ) -> AsyncIterator[tuple[bool, str]]:
        """Ask the model (greedy, under ``schema``) up to twice; yield each parseable ``(flag, text)`` answer.

        An answer that is not JSON or lacks ``keys`` counts as an invalid
        output and is asked again; the caller decides whether a parsed one
        will do (and counts it dropped when none did).
        """
        flag_key, text_key = keys
        for _attempt in range(2):
            out = await self.complete(self.request(messages, json_schema=schema, temperature=0.0, max_tokens=max_tokens))
            try:
                data = loads_constrained(out.text, out.finish_reason)
                answer = bool(data.get(flag_key, False)), str(data[text_key])
            except (ValueError, KeyError, TypeError):
                self.invalid_outputs += 1
                continue
            yield answer

    # -- the evolving instruction ---------------------------------------------------------
    async def _evolve_instruction(self, ev: UserTurn) -> None:
        """A standing request ("from now on, call me Sam") becomes part of the conversation's instruction.

        The line kept is the user's own sentence, quoted: a small model's
        paraphrase drifts, the user's words cannot. Each change is a new
        version; ``Swarm.revert_instruction`` restores any earlier one.
        """
        sentences = re.split(r"(?<=[.!?])\s+", ev.text.strip())
        asked = next((x for x in sentences if _STYLE.search(x)), "")
        asked = " ".join(asked.split())[:200].rstrip()
        if not asked:
            return
        line = f'The user asked you, for the rest of this conversation: "{asked}"'
        await self.set_instruction(ev.conversation, ev.turn, line, reason="a standing request from the user", append=True)

    async def set_instruction(
        self,
        conversation: str,
        turn: str | None,
        text: str,
        *,
        reason: str,
        append: bool,
        source: str = "",
        replaces: str | None = None,
    ) -> int:
        """Make ``text`` the conversation's instruction addendum (or add it as a line) as a new version.

        With ``append``, ``text`` becomes the last line; a line starting with
        ``replaces`` goes (a newer fact of the same kind), and so do the oldest
        lines beyond ``MAX_EVOLVED_CHARS``. An append that changes nothing
        makes no version.
        """
        store = self.ctx.conversations
        version, current = await store.instruction(conversation)
        if append:
            lines = [
                x for x in current.splitlines()
                if x.strip() and x.strip() != text and not (replaces and x.startswith(replaces))
            ] + [text]
            while len("\n".join(lines)) > MAX_EVOLVED_CHARS and len(lines) > 1:
                lines.pop(0)
            text = "\n".join(lines)
            if text == current:
                return version
        version = await store.add_instruction_version(conversation, text, reason=reason, source=source or self.name)
        await self.emit(InstructionChanged(conversation=conversation, turn=turn, version=version, text=text, reason=reason))
        return version

    async def on_memory_write(self, ev: MemoryWrite) -> None:
        """A fact the memory bot stored becomes a line of the instruction (a newer fact replaces the older line).

        The primary's check: only the fact kinds ``memory.instruction_facts``
        names, only facts whose value is in the user's own words (the stored
        clause), and the line is built from a template, never generated.
        """
        item = ev.item
        pairs = item.facts or ([(item.attribute, item.value)] if item.attribute and item.value else [])
        if item.kind != "fact" or not pairs or "user" not in self.config.memory.read:
            return
        if (await self.ctx.conversations.get_conversation(ev.conversation)).room:
            return  # a room holds several people: "the user" would be whoever spoke last
        for attribute, value in pairs:
            if attribute not in self.ctx.config.memory.instruction_facts:
                continue
            if not grounded_in(value, item.text, share=1.0):
                log.info("primary: fact %s not used in the instruction (%r is not in %r)", item.id, value, item.text)
                continue
            prefix = fact_line_prefix(attribute)
            await self.set_instruction(
                ev.conversation,
                ev.turn,
                f"{prefix} {value}",
                reason=f"memory: {attribute} (fact {item.id})",
                append=True,
                source=ev.bot,
                replaces=prefix if attribute in SINGLE_VALUED else None,
            )

    async def _instruction_from_thought(self, state: TurnState, thought: ThoughtEnd) -> None:
        """Offer a thought to the model as a standing rule; keep it only if it passes the primary's check."""
        messages = [
            ChatMessage("system", INSTRUCT_PROMPT),
            ChatMessage("user", f"User said: {state.text}\nThought: {thought.text}"),
        ]
        evidence = f"{state.text} {thought.text}"
        rule, problem = "", "no valid answer from the model"
        async for lasting, rule in self._answers(messages, INSTRUCT_SCHEMA, ("lasting", "rule"), max_tokens=80):
            rule = " ".join(rule.split())
            if not lasting or not rule:
                rule, problem = "", "no lasting preference in the thought"
                break
            problem = instruction_problem(rule, evidence) or ""
            if not problem:
                break
            log.info("primary: rule from thought %s refused (%s): %r", thought.thought_id, problem, rule)
            self.invalid_outputs += 1
        else:
            self.dropped_outputs += 1
        await self.emit(
            InstructionProposal(
                conversation=state.conversation,
                turn=state.turn,
                thought_id=thought.thought_id,
                thinker=thought.bot,
                rule=rule,
                accepted=not problem,
                problem=problem,
            )
        )
        if not problem:
            await self.set_instruction(
                state.conversation,
                state.turn,
                thought_line(thought.bot, rule),
                reason=f"thought {thought.thought_id} from {thought.bot}",
                append=True,
                source=thought.bot,
            )

    # -- rooms ----------------------------------------------------------------------------
    async def _route_room(self, ev: UserTurn) -> None:
        cfg = self.ctx.config
        room = cfg.room(ev.room or "")
        personas = [cfg.bot(p) for p in room.personas if cfg.bot(p).enabled]
        decision = await self.ctx.rooms.decide(room, personas, ev.text, turn=ev.message_id)
        targets = list(decision.answer)
        reasons = {p: f"room: {r}" for p, r in decision.reasons.items()}
        background = []
        for name in cfg.routing.always:
            if cfg.bot(name).enabled and name not in targets:
                targets.append(name)
                background.append(name)
                reasons[name] = "always"
        for name, why in decision.limited.items():
            reasons.setdefault(name, f"skipped: {why}")
        # the personas' replies are theirs; the turn settles when the background bots are done
        state = TurnState(
            turn=ev.message_id, conversation=ev.conversation, user_id=ev.user_id, text=ev.text,
            waiting=set(background), targets=background, room=True,
        )
        self._turns[ev.message_id] = state
        await self.emit(Route(conversation=ev.conversation, turn=ev.message_id, targets=targets, reasons=reasons))
        if not state.waiting:
            self.tasks.spawn(self._settle(state), name=f"settle:{state.turn}")
        else:
            state.timer = self.tasks.spawn(self._timeout(state), name=f"timeout:{state.turn}")

    def _arrived(self, state: TurnState, bot: str) -> None:
        state.waiting.discard(bot)
        if not state.waiting:
            if state.timer:
                state.timer.cancel()
            self.tasks.spawn(self._settle(state), name=f"settle:{state.turn}")

    async def on_bot_down(self, name: str) -> None:
        """The last worker running ``name`` died: stop waiting for it; its turns settle without it."""
        for state in list(self._turns.values()):
            if name in state.waiting and not state.settled:
                state.missing.append(name)
                self._arrived(state, name)

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
            if not state.room:  # a room has no conversation bot to bring anything into
                await self._reflect(state)
        except ShoalError as exc:
            log.warning("primary could not reflect on %s: %s", state.turn, exc)
        finally:
            self._turns.pop(state.turn, None)
            await self.emit(
                TurnSettled(
                    conversation=state.conversation, turn=state.turn, waited_for=state.targets, timed_out=late,
                    missing=state.missing,
                )
            )

    async def _reflect(self, state: TurnState) -> None:
        mentioned = self._mentioned.setdefault(state.conversation, set())
        for mem in state.recalled:
            # the person's own facts only: an edge node's fact is no "the user once said"
            if mem.id in mentioned or mem.kind != "fact" or mem.scope:
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
                await self.inject(
                    state, note, reason=f"thought {thought.thought_id}", mode="next_reply", from_bot=thought.bot
                )
            thinker = next((b for b in self.ctx.config.bots if b.name == thought.bot), None)
            if thinker is not None and thinker.proposes_instruction:
                await self._instruction_from_thought(state, thought)
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
        async for share, note in self._answers(messages, REFLECT_SCHEMA, ("share", "note")):
            note = note.strip()
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

    async def inject(self, state: TurnState, text: str, *, reason: str, mode: str, from_bot: str = "") -> None:
        await self.inject_into(state.conversation, state.turn, text, reason=reason, mode=mode, from_bot=from_bot)

    async def inject_into(
        self, conversation: str, turn: str | None, text: str, *, reason: str, mode: str, from_bot: str = ""
    ) -> None:
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
                from_bot=from_bot,
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
