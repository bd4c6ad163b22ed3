"""The conversation bot: the voice the person talks to.

Each reply is built from the bot's instruction, what the memory bot recalls
about the user, any system injections the primary has left, and the recent
history; it streams at foreground priority. A new user turn interrupts a
reply still streaming in the same conversation (latest wins); the partial
reply is kept, marked interrupted. An injection in ``interject`` mode makes
the bot speak unprompted when it is not already replying.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import datetime
from typing import Any, ClassVar

from contextlib import aclosing

from shoal.bots.guards import NAMES, NOTES, ReplyGuard, Verdict, fallback, summary
from shoal.bots.guards import language as guard_language
from shoal.errors import GenerationCancelled, ShoalError
from shoal.memory.answers import Fact, is_follow_up, memory_question
from shoal.memory.answers import answer as answer_question
from shoal.memory.extract import extract, rule_facts
from shoal.runtime.access import can
from shoal.runtime.bot import Bot
from shoal.runtime.messages import (
    Ack,
    BotError,
    FactsQuery,
    FactsResult,
    Injection,
    MemoryItem,
    ModelRoute,
    RecallQuery,
    Regenerate,
    RecallResult,
    ReplyCheck,
    ReplyDelta,
    ReplyEnd,
    ReplyReset,
    ReplyStart,
    StatusQuery,
    StatusResult,
    StopReply,
    UserTurn,
)
from shoal.cluster.local_first import Choice, LocalFirst
from shoal.runtime.rooms import QUESTION
from shoal.store.conversations import User
from shoal.store.ids import new_id
from shoal.types import CancelToken, ChatMessage, Priority

log = logging.getLogger(__name__)

THINKING_QUESTION = re.compile(
    r"\bwhat(?:'re| are| r)? (?:you|u|ya) (?:thinking|pondering|mulling|musing)|\bwhatcha (?:thinking|pondering)"
    r"|\bwhat'?s on your mind\b|\bwhat'?s going (?:on|through) (?:in )?your (?:head|mind)\b|\bpenny for your thoughts\b"
    r"|\bwhat (?:do|did) you think about (?:just now|right now)|\bwhat are your thoughts right now\b"
    r"|\bem que (?:é que )?(?:você )?(?:está|estás) a? ?pensa(?:r|ndo)\b|\bno que (?:você )?(?:está|estás) a? ?pensa(?:r|ndo)\b"
    r"|\ben qu[eé] (?:est[aá]s )?pensando\b|\ben qu[eé] piensas\b|\bà quoi (?:tu )?penses?(?:-tu)?\b|\bà quoi tu réfléchis\b"
    r"|\bworan denkst du\b|\bwas denkst du gerade\b",
    re.I,
)


#: the least temperature a reply written again is sampled with
REGENERATE_TEMPERATURE = 0.8


class ConversationBot(Bot):
    role: ClassVar[str] = "conversation"
    priority: ClassVar[Priority] = Priority.FOREGROUND
    subscribes: ClassVar[tuple[str, ...]] = ("conv.*.user", "conv.*.system")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._replies: dict[str, tuple[asyncio.Task[None], CancelToken]] = {}

    # -- handlers ---------------------------------------------------------------
    async def on_user_turn(self, ev: UserTurn) -> None:
        if ev.room:
            return  # in a room the personas answer
        await self._interrupt(ev.conversation, "a new user turn arrived")
        self._start(ev.conversation, ev.user_id, ev.message_id, ev.text, interjection=None)

    async def on_injection(self, ev: Injection) -> None:
        if ev.mode != "interject" or not self.config.interject:
            return  # it waits in the store for the next reply
        if ev.conversation in self._replies:
            return  # the reply in flight will not see it; the next one will
        conv = await self.ctx.conversations.get_conversation(ev.conversation)
        if conv.room:
            return  # in a room the personas speak
        self._start(ev.conversation, conv.user_id, ev.turn, "", interjection=ev)

    async def on_stop_reply(self, msg: StopReply) -> Ack:
        stopped = await self._interrupt(msg.conversation, "stopped by the user")
        return Ack(ok=stopped, detail="stopped" if stopped else "no reply in flight")

    async def on_regenerate(self, msg: Regenerate) -> Ack:
        """The person asked for the reply to ``msg.turn`` again (issue 14); refused while one is being written."""
        if msg.conversation in self._replies:
            return Ack(ok=False, detail="a reply is being written in this conversation")
        self._start(msg.conversation, msg.user_id, msg.turn, msg.text, interjection=None, replaces=msg.replaces)
        return Ack(ok=True, detail="writing the reply again")

    # -- replying ---------------------------------------------------------------
    def _start(
        self, conversation: str, user_id: str, turn: str | None, text: str, *,
        interjection: Injection | None, replaces: str | None = None,
    ) -> None:
        cancel = CancelToken()
        task = self.tasks.spawn(
            self._reply(conversation, user_id, turn, text, cancel, interjection, replaces), name=f"reply:{conversation}"
        )
        self._replies[conversation] = (task, cancel)
        task.add_done_callback(lambda t: self._forget(conversation, t))

    def _forget(self, conversation: str, task: asyncio.Task[None]) -> None:
        if self._replies.get(conversation, (None,))[0] is task:
            del self._replies[conversation]

    async def _interrupt(self, conversation: str, reason: str) -> bool:
        entry = self._replies.get(conversation)
        if not entry:
            return False
        task, cancel = entry
        cancel.cancel(reason)
        await asyncio.wait({task}, timeout=10)
        return True

    def replying(self, conversation: str) -> bool:
        return conversation in self._replies

    async def _reply(
        self,
        conversation: str,
        user_id: str,
        turn: str | None,
        text: str,
        cancel: CancelToken,
        interjection: Injection | None,
        replaces: str | None = None,
    ) -> None:
        message_id = new_id()
        history = await self.ctx.conversations.history(conversation, limit=self.config.history)
        # a reply the person asked to have written again is not part of what was said
        history = [m for m in history if m.id != replaces and m.status != "replaced"]
        ask_for = text or (interjection.text if interjection else "")
        # all at once: the first token waits for the slowest of them, not their sum
        user, facts, recalled, summary, (version, evolved) = await asyncio.gather(
            self._user(user_id),
            self._facts(user_id, conversation) if self.config.guards or self.config.answers else _nothing(),
            self._recall(user_id, conversation, ask_for, [m.id for m in history]),
            self.ctx.conversations.summary(conversation),
            self.ctx.conversations.instruction(conversation),
        )
        direct = await self._direct(conversation, user, text, interjection, facts)
        if direct is not None:
            # what shoal knows and what it thinks: answered from stored data, not from the model
            answer, used, thinkers = direct
            await self.emit(
                ReplyStart(
                    conversation=conversation, turn=turn, message_id=message_id, recalled=used, thinking=thinkers,
                    replaces=replaces,
                )
            )
            await self.emit(ReplyDelta(conversation=conversation, turn=turn, message_id=message_id, text=answer))
            await self._finish(conversation, turn, message_id, [answer], "complete", None, interjection, [])
            return
        pending = await self.ctx.conversations.pending_injections(conversation)
        messages = self.build_messages(history, recalled, pending, "", interjection, summary, evolved)
        await self.emit(
            ReplyStart(
                conversation=conversation,
                turn=turn,
                message_id=message_id,
                interjection=interjection is not None,
                recalled=recalled,
                injections=[p["id"] for p in pending],
                summary=summary,
                instruction_version=version,
                replaces=replaces,
            )
        )
        route, choice = self._route(text, turn, history)
        if choice is not None:
            await self._announce(conversation, turn, message_id, choice)
        guard = ReplyGuard(
            text or "",
            user_values=_values(facts) + [c.value for c in rule_facts(text or "")],
            own_names=(self.name, "shoal"),
        ) if self.config.guards and not interjection else None
        # what the current attempt has produced: kept when the reply is interrupted
        partial: list[list[str]] = [[]]
        status, error = "complete", None
        try:
            # asked again: sample more freely, or a greedy bot would say the same words once more
            temperature = max(self.config.temperature, REGENERATE_TEMPERATURE) if replaces else None
            parts = await self._guarded(
                conversation, turn, message_id, messages, cancel, guard, text or "", facts, partial, temperature,
                route, choice,
            )
        except GenerationCancelled:
            status, parts = "interrupted", partial[0]
        except asyncio.CancelledError:
            cancel.cancel("shutting down")
            await self._finish(conversation, turn, message_id, partial[0], "interrupted", None, interjection, pending)
            raise
        except ShoalError as exc:
            status, error, parts = "error", str(exc), partial[0]
            log.warning("reply in %s failed: %s", conversation, exc)
        served = choice.served_by if choice is not None else ""
        await self._finish(conversation, turn, message_id, parts, status, error, interjection, pending, served)

    async def _guarded(
        self,
        conversation: str,
        turn: str | None,
        message_id: str,
        messages: list[ChatMessage],
        cancel: CancelToken,
        guard: ReplyGuard | None,
        text: str,
        facts: list[MemoryItem],
        partial: list[list[str]],
        temperature: float | None = None,
        route: LocalFirst | None = None,
        choice: Choice | None = None,
    ) -> list[str]:
        """Stream the model's reply through the guards: regenerate once with a note, then fall back.

        With the local-first router (``route``), the reply is written where ``choice`` says;
        a change of server on the way (big failed, local took over) is announced.
        """

        def delta(piece: str) -> ReplyDelta:
            return ReplyDelta(conversation=conversation, turn=turn, message_id=message_id, text=piece)

        for attempt in range(2):
            partial[0] = parts = []
            req = self.request(messages, temperature=temperature)
            req.cancel = attempt_cancel = cancel.child()
            stopped: Verdict | None = None
            announced = choice.fallback if choice is not None else ""
            stream = route.stream(choice, req) if route is not None and choice is not None else self.stream(req)
            async with aclosing(stream) as chunks:  # type: ignore[type-var]
                try:
                    async for chunk in chunks:
                        if not chunk.text:
                            continue
                        if choice is not None and choice.fallback != announced:
                            announced = choice.fallback
                            await self._announce(conversation, turn, message_id, choice)
                        parts.append(chunk.text)
                        await self.emit(delta(chunk.text))
                        if guard is not None and (stopped := guard.feed("".join(parts))) is not None:
                            attempt_cancel.cancel(f"reply check failed: {stopped.check}")
                            break
                except GenerationCancelled:
                    if cancel.cancelled:
                        raise
            reply = clean_reply("".join(parts), (self.name,))
            if guard is None:
                return [reply]
            verdicts = guard.final(reply)
            if stopped is not None and all(v.check != stopped.check for v in verdicts if not v.ok):
                verdicts = [stopped if v.check == stopped.check else v for v in verdicts]
            failed = [v for v in verdicts if not v.ok]
            loop = next((v for v in failed if v.check == "loop"), None)
            if loop is not None and loop.keep and len(loop.keep.split()) >= 4 and len(failed) == 1:
                # a loop after a good start: keep the start, stop the rest
                await self.emit(ReplyCheck(conversation=conversation, turn=turn, message_id=message_id,
                                           attempt=attempt + 1, checks=summary(verdicts), action="truncated"))
                return [clean_reply(loop.keep, (self.name,))]
            if not failed:
                await self.emit(ReplyCheck(conversation=conversation, turn=turn, message_id=message_id,
                                           attempt=attempt + 1, checks=summary(verdicts), action="accepted"))
                return [reply]
            action = "regenerate" if attempt == 0 else "fallback"
            await self.emit(ReplyCheck(conversation=conversation, turn=turn, message_id=message_id,
                                       attempt=attempt + 1, checks=summary(verdicts), action=action))
            await self.emit(ReplyReset(conversation=conversation, turn=turn, message_id=message_id, reason=failed[0].detail))
            if attempt == 0:
                notes = [NOTES[v.check].format(lang=NAMES.get(guard.lang or "en", "English"), bot=self.name) for v in failed]
                messages = [*messages, ChatMessage("system", " ".join(dict.fromkeys(notes)))]
        name = next((v for m in facts for a, v in m.facts if a == "name"), None) or next(
            (c.value for c in rule_facts(text) if c.attribute == "name"), None
        )
        safe = fallback(text, guard.lang if guard else None, name, question=bool(QUESTION.search(text)))
        await self.emit(delta(safe))
        return [safe]

    async def _finish(
        self,
        conversation: str,
        turn: str | None,
        message_id: str,
        parts: list[str],
        status: str,
        error: str | None,
        interjection: Injection | None,
        pending: list[dict[str, Any]],
        served_by: str = "",
    ) -> None:
        text = clean_reply("".join(parts), (self.name,))
        if text or status != "error":
            await self.ctx.conversations.add_message(
                conversation, "assistant", text, bot=self.name, status=status, reply_to=turn, message_id=message_id
            )
        if status == "complete":
            used = [p["id"] for p in pending]
            if interjection is not None:
                used.append(interjection.injection_id)
            await self.ctx.conversations.consume_injections(used, message_id)
        await self.emit(
            ReplyEnd(
                conversation=conversation,
                turn=turn,
                message_id=message_id,
                text=text,
                status=status,  # type: ignore[arg-type]
                interjection=interjection is not None,
                error=error,
                served_by=served_by,
            )
        )
        if error:
            await self.emit(BotError(conversation=conversation, turn=turn, error=error))

    # -- local first (docs/cluster.md) ----------------------------------------------
    def _route(self, text: str, turn: str | None, history: list[Any]) -> tuple[LocalFirst | None, Choice | None]:
        """Where the local-first router sends a reply to ``text`` (nothing when it does not route this bot)."""
        settings = self.ctx.config.local_first_for(self.name)
        if settings is None or not text:
            return None, None
        previous = next((m.content for m in reversed(history) if m.role == "user" and m.id != turn), "")
        route = LocalFirst(settings, self.ctx.backends)
        return route, route.choose(text, previous, bot_model=self.config.model)

    async def _announce(self, conversation: str, turn: str | None, message_id: str, choice: Choice) -> None:
        a = choice.assessment
        await self.emit(
            ModelRoute(
                conversation=conversation, turn=turn, message_id=message_id, server=choice.server,
                model=choice.model or "", complexity=a.label, score=a.score, reasons=a.reasons,  # type: ignore[arg-type]
                wanted=choice.wanted, fallback=choice.fallback, text=choice.describe(),
            )
        )

    async def _user(self, user_id: str) -> User | None:
        try:
            return await self.ctx.conversations.get_user(user_id)
        except ShoalError:
            return None

    async def _facts(self, user_id: str, conversation: str) -> list[MemoryItem]:
        """The person's current facts (from the memory bot), for answers about them and the identity check."""
        bots = self.ctx.config.bots_with_role("memory")
        if not bots or not self.config.memory.read:
            return []
        try:
            res = await self.ask(
                bots[0].name, FactsQuery(user_id=user_id, conversation=conversation, bot=self.name),
                timeout=self.ctx.config.memory.recall_timeout,
            )
        except (asyncio.TimeoutError, ShoalError) as exc:
            log.info("facts skipped: %s", exc.__class__.__name__)
            return []
        return res.items if isinstance(res, FactsResult) else []

    async def _direct(
        self, conversation: str, user: User | None, text: str, interjection: Injection | None, facts: list[MemoryItem]
    ) -> tuple[str, list[MemoryItem], list[str]] | None:
        """An answer that must not come from the model: "what are you thinking?", "what do you remember about me?"."""
        if interjection is not None or not text or user is None or not self.config.answers:
            return None
        if THINKING_QUESTION.search(text):
            answer, thinkers = await self._thinking(conversation, user, text)
            return answer, [], thinkers
        question = memory_question(text)
        if question is None and is_follow_up(text):
            # "and the cats?" after "what's my dog called?": a memory question too
            history = await self.ctx.conversations.history(conversation, limit=4)
            previous = next((m.content for m in reversed(history) if m.role == "user" and m.content != text), None)
            question = memory_question(text, previous)
        if question is None or not self.config.memory.read:
            return None
        # what this very message says counts too ("I'm Bob. What's my name?")
        said, _ = extract(text)
        known = [Fact(a, v, m.text, m.sources[0] if m.sources else None, m.created_at) for m in facts for a, v in m.facts]
        known += [Fact(f.attribute, f.value, f.text) for f in said]
        used = [m for m in facts if any(a == question.attribute or question.attribute == "all" for a, _ in m.facts)]
        return answer_question(question, known), used, []

    # -- context ----------------------------------------------------------------
    async def _recall(self, user_id: str, conversation: str, text: str, visible: list[str]) -> list[MemoryItem]:
        """Memories relevant to ``text``, not already visible in the history, within the token budget."""
        mem = self.ctx.config.memory
        bots = self.ctx.config.bots_with_role("memory")
        if not bots or mem.recall_limit == 0 or not self.config.memory.read or not text:
            return []
        try:
            result = await self.ask(
                bots[0].name,
                RecallQuery(
                    user_id=user_id,
                    conversation=conversation,
                    text=text,
                    limit=mem.recall_limit,
                    bot=self.name,
                    visible=visible,
                ),
                timeout=mem.recall_timeout,
            )
        except (asyncio.TimeoutError, ShoalError) as exc:
            log.info("recall skipped: %s", exc.__class__.__name__)
            return []
        items = result.items if isinstance(result, RecallResult) else []
        kept, used = [], 0
        for it in items:
            cost = estimate_tokens(it.text) + 3
            if used + cost > mem.recall_budget_tokens:
                break
            kept.append(it)
            used += cost
        return kept

    async def _thinking(self, conversation: str, user: User, text: str = "") -> tuple[str, list[str]]:
        """"What are you thinking about?": the live thought of each thinker this person may see, quoted."""
        say = _THINKING_SAY[_question_language(text)]
        allowed = [b for b in self.ctx.config.bots_with_role("thinker") if can(user, b, "see_thoughts")]
        if not allowed:
            return (say["private"] if self.ctx.config.bots_with_role("thinker") else say["none"]), []
        quoted, used = [], []
        for bot in allowed:
            try:
                res = await self.ask(bot.name, StatusQuery(conversation=conversation), timeout=1.0)
            except (asyncio.TimeoutError, ShoalError):
                continue
            if not isinstance(res, StatusResult):
                continue
            for st in res.statuses:
                if st.text.strip():
                    used.append(bot.name)
                    state = say["live"] if st.thinking else say["last"]
                    quoted.append(f"{bot.name} ({state}): “{trim_thought(st.text)}”")
        if not quoted:
            return say["nothing"], []
        return say["head"] + "\n" + "\n".join(quoted), list(dict.fromkeys(used))

    def build_messages(
        self,
        history: list[Any],
        recalled: list[MemoryItem],
        pending: list[dict[str, Any]],
        thinking: str,
        interjection: Injection | None,
        summary: str = "",
        evolved: str = "",
    ) -> list[ChatMessage]:
        """The prompt: instruction, evolved lines, summary, recalled memories, notes, then the history."""
        system = [self.config.instruction or "You are a helpful assistant."]
        if evolved:
            system.append(evolved)
        if summary:
            system.append(f"Earlier in this conversation: {summary}")
        if recalled:
            system.append("What you remember:")
            system += [render_memory(m) for m in recalled]
        if interjection is not None:
            pending = [p for p in pending if p["id"] != interjection.injection_id]
        if pending:
            system.append("Notes from your background mind (use them if they fit):")
            system += [f"- {p['text']}" for p in pending]
        if thinking:
            system.append(f"Your background thoughts right now: {thinking}")
        messages = [ChatMessage("system", "\n".join(system))]
        for m in history:
            if m.role in ("user", "assistant") and m.content:
                messages.append(ChatMessage(m.role, m.content))
        if interjection is not None:
            messages.append(
                ChatMessage("system", f"Say this to the user now, briefly and in your own words: {interjection.text}")
            )
        return messages


def render_memory(m: MemoryItem) -> str:
    """One recalled memory as a line of the prompt, said as what it is: the person's words, a reply, or a
    node's observation (with the node, when, how sure, and the entries it rests on)."""
    if m.scope.startswith("node:"):
        return _render_node_note(m)
    if m.kind == "summary":
        return f"- Earlier: {m.text}"
    if m.method.startswith("reply"):
        return f'- You once said: "{m.text}"'
    return f'- The user said: "{m.text}"'


def _render_node_note(m: MemoryItem) -> str:
    """"- Observed by node garage on Tue 01 Dec at 02:14 (confidence 0.90): … [from edge:garage:17, citing edge:garage:41]"."""
    node = m.scope.split(":", 1)[1]
    head = f"- {'Learned' if m.kind == 'fact' else 'Observed'} by node {node}"
    if m.created_at is not None:
        head += f" on {datetime.fromtimestamp(m.created_at):%a %d %b at %H:%M}"
    if m.confidence is not None:
        head += f" (confidence {m.confidence:.2f})"
    where = ""
    if m.sources:  # the note's own entry, then the readings it cites (ids, not values: the text has those)
        where = f" [from {m.sources[0]}"
        if len(m.sources) > 1:
            where += ", citing " + ", ".join(m.sources[1:4]) + (", …" if len(m.sources) > 4 else "")
        where += "]"
    return f"{head}: {m.text}{where}"


_THINKING_SAY = {
    "en": {"head": "Here's what's on my mind:", "live": "still thinking", "last": "my last thought",
           "nothing": "Nothing in particular right now — tell me something and I'll think it over.",
           "private": "My background thoughts aren't shared with your account — an admin can allow it (see_thoughts in the bot's access settings).",
           "none": "I'm not thinking about anything in the background right now."},
    "pt": {"head": "Isto é o que tenho em mente:", "live": "ainda a pensar", "last": "o meu último pensamento",
           "nothing": "Nada em especial agora — diz-me algo e eu penso nisso.",
           "private": "Os meus pensamentos de fundo não são partilhados com a tua conta — um administrador pode permitir.",
           "none": "Não estou a pensar em nada em segundo plano agora."},
    "es": {"head": "Esto es lo que tengo en mente:", "live": "todavía pensando", "last": "mi último pensamiento",
           "nothing": "Nada en especial ahora mismo: cuéntame algo y lo pensaré.",
           "private": "Mis pensamientos de fondo no se comparten con tu cuenta; un administrador puede permitirlo.",
           "none": "Ahora mismo no estoy pensando en nada en segundo plano."},
    "fr": {"head": "Voici ce qui me trotte dans la tête :", "live": "je réfléchis encore", "last": "ma dernière pensée",
           "nothing": "Rien de particulier pour l'instant — dis-moi quelque chose et j'y réfléchirai.",
           "private": "Mes pensées de fond ne sont pas partagées avec ton compte — un administrateur peut l'autoriser.",
           "none": "Je ne pense à rien en arrière-plan pour l'instant."},
    "de": {"head": "Das geht mir gerade durch den Kopf:", "live": "denke noch nach", "last": "mein letzter Gedanke",
           "nothing": "Gerade nichts Besonderes — erzähl mir etwas, dann denke ich darüber nach.",
           "private": "Meine Hintergrundgedanken werden nicht mit deinem Konto geteilt — ein Admin kann das erlauben.",
           "none": "Ich denke gerade an nichts im Hintergrund."},
}


def _question_language(text: str) -> str:
    lang, confidence = guard_language(text)
    if lang in _THINKING_SAY and confidence >= 0.4:
        return lang
    low = text.lower()
    for lang, marker in (("pt", "pensa"), ("es", "piensas"), ("fr", "penses"), ("de", "denkst")):
        if marker in low:
            return lang
    return "en"


def trim_thought(text: str, limit: int = 400) -> str:
    """A thought as it can be quoted: whole, or cut at a sentence boundary (marked with …)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
    return (cut[: end + 1] if end > limit // 3 else cut.rsplit(" ", 1)[0]) + " …"


async def _nothing() -> list[MemoryItem]:
    return []


def _values(facts: list[MemoryItem]) -> list[str]:
    return [v for m in facts for _, v in m.facts]


def estimate_tokens(text: str) -> int:
    """Roughly 4 characters a token for English: enough for budgeting context."""
    return max(1, len(text) // 4)


_ROLE_LEAK = re.compile(r"\n\s*(?:user|assistant|system)\s*:.*$", re.I | re.S)
#: labels a small model puts in front of its own line ("Assistant: Hello")
SPEAKER_LABELS = ("assistant", "shoal", "bot", "ai", "system")


def clean_reply(text: str, speakers: tuple[str, ...] = ()) -> str:
    """Trim what small models add: its own speaker label in front, a forged next turn after.

    Only a speaker's label goes — the bot's (``SPEAKER_LABELS`` and the
    ``speakers`` given, e.g. its name) — never a word of the answer
    ("Ingredients: two eggs" stays as it is).
    """
    names = "|".join(re.escape(n) for n in (*SPEAKER_LABELS, *speakers) if n)
    tag = re.compile(rf"^\s*(?:{names})\s*:\s+(?=\S)", re.I)
    return tag.sub("", _ROLE_LEAK.sub("", text), count=1).strip()
