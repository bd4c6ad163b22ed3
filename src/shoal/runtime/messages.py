"""Messages that travel on the mesh.

*Events* belong to a conversation and are published on
``conv.<id>.<channel>``; every one carries the conversation id, the bot that
produced it, its ``kind`` and the bot's own monotonic ``bot_seq``. The
journal gives each a per-conversation ``seq`` when it is recorded, which is
what clients resume from.

*Control* messages go to one bot on ``bot.<name>.control`` (commands and
request/reply queries).
"""

from __future__ import annotations

import functools
import re
import time
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter

PROTOCOL_VERSION = 1


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class Event(_Msg):
    """An event of a conversation. ``json()`` is its serialised form, computed once (the journal
    writes it, every websocket client of the conversation sends it)."""

    _json: str | None = PrivateAttr(default=None)
    kind: str
    conversation: str
    bot: str = ""
    bot_seq: int = 0
    seq: int | None = None
    ts: float = Field(default_factory=time.time)
    #: the user message this event belongs to, when there is one
    turn: str | None = None

    def json_text(self) -> str:
        if self._json is None:
            self._json = self.model_dump_json()
        return self._json

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> "Event":  # type: ignore[override]
        # a copy is another event (a seq given, a redaction): its JSON is made afresh
        copy = super().model_copy(update=update, deep=deep)
        copy._json = None
        return copy

    @property
    def channel(self) -> str:
        return CHANNEL[self.kind]

    @property
    def subject(self) -> str:
        return f"conv.{self.conversation}.{self.channel}"


class MemoryItem(_Msg):
    id: str
    kind: str
    text: str
    attribute: str | None = None
    value: str | None = None
    sources: list[str] = Field(default_factory=list)
    method: str = ""
    supersedes: str | None = None
    #: a fact's every (attribute, value) still current: one clause may state several
    facts: list[tuple[str, str]] = Field(default_factory=list)
    created_at: float | None = None
    #: whose memory it is: "" the person's own (what they said, what was replied to them);
    #: "node:<name>" an edge node's observation or fact (issue 16), dated by ``created_at``
    scope: str = ""
    #: how sure its source was (an edge observation's rule), when it says
    confidence: float | None = None


# --- conv.<id>.user ---------------------------------------------------------
class UserTurn(Event):
    kind: Literal["user.turn"] = "user.turn"
    message_id: str
    user_id: str
    text: str
    #: the person's name (rooms hold several people)
    author: str = ""
    #: set when the conversation is a room: personas answer, not the conversation bot
    room: str | None = None


# --- conv.<id>.reply --------------------------------------------------------
class ReplyStart(Event):
    kind: Literal["reply.start"] = "reply.start"
    message_id: str
    interjection: bool = False
    #: what the reply was given: recalled memories and system injections
    recalled: list[MemoryItem] = Field(default_factory=list)
    injections: list[str] = Field(default_factory=list)
    #: the running summary of the conversation's crushed middle, when there is one
    summary: str = ""
    #: the version of the conversation's evolved instruction the reply was built on (0: none)
    instruction_version: int = 0
    #: thinkers whose live thought the reply was given ("what are you thinking about?")
    thinking: list[str] = Field(default_factory=list)
    #: the reply this one is written in place of, when the person asked for it again (issue 14)
    replaces: str | None = None


class ReplyDelta(Event):
    kind: Literal["reply.delta"] = "reply.delta"
    message_id: str
    text: str


class ReplyCheck(Event):
    """The guards' verdict on one attempt at a reply (language, echo, identity, loop) and what was done."""

    kind: Literal["reply.check"] = "reply.check"
    message_id: str
    attempt: int = 1
    #: check -> "ok" or why it failed
    checks: dict[str, str] = Field(default_factory=dict)
    action: Literal["accepted", "regenerate", "fallback", "truncated"] = "accepted"


class ReplyReset(Event):
    """Discard the deltas of this reply received so far: it is being written again."""

    kind: Literal["reply.reset"] = "reply.reset"
    message_id: str
    reason: str = ""


class ReplyEnd(Event):
    kind: Literal["reply.end"] = "reply.end"
    message_id: str
    text: str
    status: Literal["complete", "interrupted", "error"] = "complete"
    interjection: bool = False
    error: str | None = None
    #: the server that wrote it, when the local-first router chose one (docs/cluster.md)
    served_by: str = ""


# --- conv.<id>.thought ------------------------------------------------------
class ThoughtStart(Event):
    kind: Literal["thought.start"] = "thought.start"
    thought_id: str
    reason: str = ""
    #: the thinker's interrupt policy when it started (queue, spawn, terminate, merge)
    policy: str = ""
    #: thoughts folded into this one (policy "merge")
    merged_from: list[str] = Field(default_factory=list)
    #: turns this thought covers (more than one after a merge)
    turns: list[str] = Field(default_factory=list)


class ThoughtQueued(Event):
    """A turn waits for the thinker (policy "queue"); it starts when those before it end."""

    kind: Literal["thought.queued"] = "thought.queued"
    position: int


class ThoughtDelta(Event):
    kind: Literal["thought.delta"] = "thought.delta"
    thought_id: str
    text: str


class ThoughtEnd(Event):
    kind: Literal["thought.end"] = "thought.end"
    thought_id: str
    text: str
    #: cancelled: stopped (terminate, on request); culled: too many at once (spawn);
    #: merged: folded into a newer thought (merge)
    status: Literal["done", "cancelled", "culled", "merged", "error"] = "done"
    error: str | None = None


class MonologueStep(Event):
    """One line of the background monologue between the primary and a thinker."""

    kind: Literal["monologue.step"] = "monologue.step"
    thought_id: str
    speaker: str
    round: int
    text: str


# --- conv.<id>.action -------------------------------------------------------
class ActionStart(Event):
    """A hot action bot was spawned for one task."""

    kind: Literal["action.start"] = "action.start"
    action_id: str
    template: str
    task: str


class ActionEnd(Event):
    kind: Literal["action.end"] = "action.end"
    action_id: str
    template: str
    text: str = ""
    status: Literal["done", "cancelled", "error"] = "done"
    #: a tool's result: worth saying now, not only in the next reply
    interject: bool = False
    error: str | None = None


# --- conv.<id>.alarm / conv.<id>.timer -------------------------------------
class Alarm(Event):
    """An outside event (webhook) for the primary to bring into the conversation."""

    kind: Literal["alarm"] = "alarm"
    hook: str
    text: str
    data: dict[str, Any] = Field(default_factory=dict)


class TimerTick(Event):
    """A timer bot's periodic event, e.g. the conversation has been quiet for a while."""

    kind: Literal["timer.tick"] = "timer.tick"
    timer: str = "silence"
    seconds: float = 0.0


class InstructionChanged(Event):
    """The foreground instruction of this conversation evolved (or was reverted)."""

    kind: Literal["instruction.changed"] = "instruction.changed"
    version: int
    text: str
    reason: str = ""


class InstructionProposal(Event):
    """A thinker's thought offered as a line of the instruction, and the primary's verdict."""

    kind: Literal["instruction.proposal"] = "instruction.proposal"
    thought_id: str
    thinker: str
    rule: str = ""
    accepted: bool = False
    #: why it was refused ("" when accepted)
    problem: str = ""


# --- conv.<id>.memory -------------------------------------------------------
class MemoryWrite(Event):
    kind: Literal["memory.write"] = "memory.write"
    item: MemoryItem


class MemoryRejected(Event):
    """A candidate fact the memory bot refused (ungrounded, invalid, ...)."""

    kind: Literal["memory.rejected"] = "memory.rejected"
    candidate: dict[str, Any]
    reason: str


class MemoryProposed(Event):
    """Facts waiting for the user's consent (memory.consent = "ask")."""

    kind: Literal["memory.proposed"] = "memory.proposed"
    pending: list[dict[str, Any]]


class MemoryConsent(Event):
    """The decision on proposed facts: stored, or dropped."""

    kind: Literal["memory.consent"] = "memory.consent"
    pending_ids: list[str]
    approved: bool
    reason: str = ""


class MemoryDone(Event):
    kind: Literal["memory.done"] = "memory.done"
    written: list[str] = Field(default_factory=list)
    #: older memories that bear on this turn (candidates for "I remember ...")
    recalled: list[MemoryItem] = Field(default_factory=list)


# --- conv.<id>.route --------------------------------------------------------
class Route(Event):
    kind: Literal["route"] = "route"
    targets: list[str]
    reasons: dict[str, str] = Field(default_factory=dict)


class ModelRoute(Event):
    """Which server writes a reply under the local-first router, and why (docs/cluster.md).

    Published before the reply streams; published again with ``fallback`` set when
    another server ends up writing it (the big one failed before its first token).
    Reasons never carry server addresses or upstream errors (those are for admins).
    """

    kind: Literal["route.model"] = "route.model"
    message_id: str
    #: the server the reply goes to (or, with ``fallback``, went to)
    server: str
    model: str = ""
    complexity: Literal["simple", "complex"]
    score: float
    #: what made the turn simple or complex ("about code", "3 questions")
    reasons: list[str] = Field(default_factory=list)
    #: the server the turn's complexity asked for
    wanted: str
    #: why ``server`` is not ``wanted`` ("" when it is)
    fallback: str = ""
    #: all of it in one line, as the headspace shows it (web UI and ``shoal chat``)
    text: str = ""


class TurnSettled(Event):
    kind: Literal["turn.settled"] = "turn.settled"
    waited_for: list[str] = Field(default_factory=list)
    timed_out: list[str] = Field(default_factory=list)
    #: targets nobody ran: their last worker died (the mesh on NATS, docs/mesh.md)
    missing: list[str] = Field(default_factory=list)


# --- conv.<id>.system -------------------------------------------------------
class Injection(Event):
    kind: Literal["injection"] = "injection"
    injection_id: str
    text: str
    reason: str = ""
    #: "interject": the conversation bot may speak now; "next_reply": use it next time
    mode: Literal["interject", "next_reply"] = "next_reply"
    #: the bot whose output it carries (a thinker's note is shown only to those who may see its thoughts)
    from_bot: str = ""


class BotError(Event):
    kind: Literal["bot.error"] = "bot.error"
    error: str


CHANNEL: dict[str, str] = {
    "user.turn": "user",
    "reply.start": "reply",
    "reply.delta": "reply",
    "reply.end": "reply",
    "reply.check": "reply",
    "reply.reset": "reply",
    "thought.start": "thought",
    "thought.delta": "thought",
    "thought.end": "thought",
    "thought.queued": "thought",
    "monologue.step": "thought",
    "action.start": "action",
    "action.end": "action",
    "alarm": "alarm",
    "timer.tick": "timer",
    "instruction.changed": "system",
    "instruction.proposal": "system",
    "memory.write": "memory",
    "memory.rejected": "memory",
    "memory.done": "memory",
    "memory.proposed": "memory",
    "memory.consent": "memory",
    "route": "route",
    "route.model": "route",
    "turn.settled": "route",
    "injection": "system",
    "bot.error": "route",
}

AnyEvent = Annotated[
    Union[
        UserTurn,
        ReplyStart,
        ReplyDelta,
        ReplyEnd,
        ReplyCheck,
        ReplyReset,
        ThoughtStart,
        ThoughtDelta,
        ThoughtEnd,
        ThoughtQueued,
        MonologueStep,
        ActionStart,
        ActionEnd,
        Alarm,
        TimerTick,
        InstructionChanged,
        InstructionProposal,
        MemoryWrite,
        MemoryRejected,
        MemoryProposed,
        MemoryConsent,
        MemoryDone,
        Route,
        ModelRoute,
        TurnSettled,
        Injection,
        BotError,
    ],
    Field(discriminator="kind"),
]
_EVENT = TypeAdapter(AnyEvent)


def parse_event(data: dict[str, Any] | str | bytes) -> Event:
    if isinstance(data, (str, bytes)):
        return _EVENT.validate_json(data)
    return _EVENT.validate_python(data)


# --- bot.<name>.control -----------------------------------------------------
class Control(_Msg):
    kind: str


class RecallQuery(Control):
    kind: Literal["recall.query"] = "recall.query"
    user_id: str
    conversation: str
    text: str
    limit: int = 5
    #: the asking bot: its memory scopes decide what it may read
    bot: str = ""
    #: messages already in the asker's context: their raw notes are not repeated
    visible: list[str] = Field(default_factory=list)


class RecallResult(Control):
    kind: Literal["recall.result"] = "recall.result"
    items: list[MemoryItem] = Field(default_factory=list)


class FactsQuery(Control):
    """The person's current facts (for answers about them, and to catch a reply claiming them)."""

    kind: Literal["facts.query"] = "facts.query"
    user_id: str
    conversation: str | None = None
    #: the asking bot: its memory scopes decide what it may read
    bot: str = ""


class FactsResult(Control):
    kind: Literal["facts.result"] = "facts.result"
    items: list[MemoryItem] = Field(default_factory=list)


class StatusQuery(Control):
    """"What are you thinking about?" — answered from the live buffer."""

    kind: Literal["status.query"] = "status.query"
    conversation: str | None = None


class ThinkerStatus(_Msg):
    bot: str
    thinking: bool
    conversation: str | None = None
    thought_id: str | None = None
    text: str = ""
    started: float | None = None


class StatusResult(Control):
    kind: Literal["status.result"] = "status.result"
    statuses: list[ThinkerStatus] = Field(default_factory=list)


class CancelThought(Control):
    kind: Literal["thought.cancel"] = "thought.cancel"
    conversation: str | None = None
    thought_id: str | None = None


class StopReply(Control):
    kind: Literal["reply.stop"] = "reply.stop"
    conversation: str


class ConsentDecision(Control):
    """The primary's decision on facts waiting for consent."""

    kind: Literal["consent.decision"] = "consent.decision"
    conversation: str
    pending_ids: list[str]
    approved: bool
    reason: str = ""


class MonologuePrompt(Control):
    """The thinker asks the primary to carry the background monologue one step on."""

    kind: Literal["monologue.prompt"] = "monologue.prompt"
    conversation: str
    thought: str
    transcript: list[str] = Field(default_factory=list)


class MonologueReply(Control):
    kind: Literal["monologue.reply"] = "monologue.reply"
    text: str = ""
    done: bool = False


class Speak(Control):
    """Ask a persona to say its next line in a room (two personas talking)."""

    kind: Literal["persona.speak"] = "persona.speak"
    conversation: str
    turn: str | None = None
    reason: str = ""


class Spoken(Control):
    kind: Literal["persona.spoken"] = "persona.spoken"
    message_id: str = ""
    text: str = ""
    status: str = "complete"


class FireAlarm(Control):
    """Deliver a webhook payload to an alarm bot."""

    kind: Literal["alarm.fire"] = "alarm.fire"
    conversation: str
    text: str
    data: dict[str, Any] = Field(default_factory=dict)


class Scrub(Control):
    """Words a person had forgotten: a bot holding copies in memory (a live thought buffer) removes them."""

    kind: Literal["memory.scrub"] = "memory.scrub"
    terms: list[str] = Field(default_factory=list)
    conversations: list[str] = Field(default_factory=list)


class Ack(Control):
    kind: Literal["ack"] = "ack"
    ok: bool = True
    detail: str = ""
    #: how many things the command acted on, when it counts them
    count: int = 0


AnyControl = Annotated[
    Union[
        RecallQuery, RecallResult, FactsQuery, FactsResult, StatusQuery, StatusResult, CancelThought, StopReply, ConsentDecision,
        MonologuePrompt, MonologueReply, Speak, Spoken, FireAlarm, Scrub, Ack,
    ],
    Field(discriminator="kind"),
]
_CONTROL = TypeAdapter(AnyControl)


def parse_control(data: dict[str, Any] | str | bytes) -> Control:
    if isinstance(data, (str, bytes)):
        return _CONTROL.validate_json(data)
    return _CONTROL.validate_python(data)


def handler_name(msg: BaseModel) -> str:
    """``UserTurn`` -> ``on_user_turn`` (handlers are named after message types)."""
    return _handler_name(type(msg))


@functools.lru_cache(maxsize=None)
def _handler_name(cls: type) -> str:
    # asked for every message by every subscriber: computed once per type
    return "on_" + re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()


# --- conv.<id>.action: tools (issue 17, docs/tools.md) ------------------------------
class ToolCall(Event):
    """A bot asked for a tool (before the permission check, so refusals are on record too)."""

    kind: Literal["tool.call"] = "tool.call"
    call_id: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolResult(Event):
    """What became of a tool call: ``ok`` with its result, or why not."""

    kind: Literal["tool.result"] = "tool.result"
    call_id: str
    tool: str
    status: Literal["ok", "error", "refused", "invalid", "timeout", "unknown"] = "ok"
    result: str = ""
    error: str | None = None


CHANNEL.update({"tool.call": "action", "tool.result": "action"})
_TOOL_EVENTS = __import__("typing").get_args(__import__("typing").get_args(AnyEvent)[0]) + (ToolCall, ToolResult)
AnyEvent = Annotated[Union[_TOOL_EVENTS], Field(discriminator="kind")]  # type: ignore[valid-type]
_EVENT = TypeAdapter(AnyEvent)


# --- bot.<name>.control: ask for a reply again (issue 14, docs/learn.md) ---------------------
class Regenerate(Control):
    """Write the reply to ``turn`` again; the reply ``replaces`` stays stored as a rejected alternative.

    Answered with an ``Ack``: ``ok=False`` when a reply is already being written in the conversation.
    """

    kind: Literal["reply.regenerate"] = "reply.regenerate"
    conversation: str
    turn: str
    user_id: str
    #: the person's message being answered again (the bot does not read it back from the store)
    text: str
    replaces: str


_LEARN_CONTROLS = __import__("typing").get_args(__import__("typing").get_args(AnyControl)[0]) + (Regenerate,)
AnyControl = Annotated[Union[_LEARN_CONTROLS], Field(discriminator="kind")]  # type: ignore[valid-type]
_CONTROL = TypeAdapter(AnyControl)
