"""``shoal chat``: talk to the swarm in a terminal and watch its headspace."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.text import Text

from shoal.config import Env
from shoal.errors import ShoalError
from shoal.runtime.messages import (
    ActionEnd,
    BotError,
    InstructionChanged,
    InstructionProposal,
    MonologueStep,
    ThoughtQueued,
    Event,
    Injection,
    MemoryConsent,
    MemoryProposed,
    MemoryRejected,
    MemoryWrite,
    ModelRoute,
    ReplyCheck,
    ReplyDelta,
    ReplyEnd,
    ReplyReset,
    ReplyStart,
    Route,
    ThoughtDelta,
    ThoughtEnd,
    ThoughtStart,
    TurnSettled,
)
from shoal.runtime.journal import JournalProblem
from shoal.runtime.swarm import Swarm

out = Console()

HELP = (
    "[bold]/thinking[/] what the thinkers are thinking   [bold]/cancel[/] stop their thoughts\n"
    "[bold]/memories[/] what shoal knows about you   [bold]/instruction[/] its versions   [bold]/revert N[/] go back to one\n"
    "[bold]/good[/] [bold]/bad[/] rate the last reply   [bold]/fix TEXT[/] correct it into what you wanted   "
    "[bold]/again[/] have it written again (shoal learns from these)\n"
    "[bold]/new[/] start a new conversation   [bold]/quit[/] leave (Ctrl-D works too)\n"
    "[dim]@name asks a specialised thinker by name, e.g. @thinker what do you make of this?[/]"
)


def chat(
    message: str = typer.Option(None, "--message", "-m", help="send one message and exit"),
    conversation: str = typer.Option(None, "--conversation", "-c", help="continue this conversation (id)"),
    as_json: bool = typer.Option(False, "--json", help="with --message: print one JSON object"),
    timeout: float = typer.Option(120.0, "--timeout", help="seconds to wait for the background to settle"),
) -> None:
    """Chat with the swarm. Thoughts, routing and memory writes show as they happen."""
    if as_json and message is None:
        raise typer.BadParameter("--json needs --message")
    asyncio.run(_chat(message, conversation, as_json, timeout))


async def _chat(message: str | None, conversation: str | None, as_json: bool, timeout: float) -> None:
    env = Env.load()
    async with Swarm(env) as swarm:
        user = await swarm.local_user()
        if conversation:
            conv = await swarm.conversations.get_conversation(conversation, user_id=user.id)
        else:
            conv = await swarm.conversations.create_conversation(user.id)
        if message is not None:
            if not as_json:
                with out.status("loading the models…"):
                    await swarm.warm_up()
            else:
                await swarm.warm_up()
            if as_json:
                result = await swarm.run_turn(conv.id, user.id, message, timeout=timeout)
                print(json.dumps(result.as_dict(), ensure_ascii=False))
            else:
                await _turn(swarm, conv.id, user.id, message, timeout)
            return
        await _interactive(swarm, conv.id, user.id, timeout, resumed=bool(conversation))


async def _interactive(swarm: Swarm, conversation: str, user_id: str, timeout: float, *, resumed: bool) -> None:
    with out.status("loading the models…"):
        await swarm.warm_up()
    out.print(
        Panel.fit(
            f"[bold]shoal[/] — conversation [cyan]{conversation}[/]\n"
            f"resume later with: [bold]shoal chat -c {conversation}[/]\n{HELP}",
            border_style="blue",
        )
    )
    if resumed:
        for m in await swarm.conversations.history(conversation, limit=10):
            style = "green" if m.role == "user" else "white"
            out.print(Text(f"{'you' if m.role == 'user' else m.bot or m.role}: {m.content}", style=style))
    read = _reader()
    while True:
        try:
            text = (await read("you › ")).strip()
        except (EOFError, KeyboardInterrupt):
            out.print("[dim]bye[/]")
            return
        if not text:
            continue
        if text in ("/quit", "/exit"):
            return
        if text == "/help":
            out.print(HELP)
            continue
        if text == "/thinking":
            await _show_thinking(swarm, conversation)
            continue
        if text == "/cancel":
            n = await swarm.cancel_thoughts(conversation)
            out.print(f"[dim]cancelled {n} thought(s)[/]")
            continue
        if text == "/instruction":
            versions = await swarm.instruction_versions(conversation, user_id)
            if not versions:
                out.print("[dim]the instruction has not changed in this conversation[/]")
            for v in versions:
                out.print(f"[bold]v{v['version']}[/] [dim]({v['reason']})[/]\n{v['text'] or '(the bot’s own instruction only)'}")
            continue
        if text.startswith("/revert"):
            arg = text.removeprefix("/revert").strip()
            if not arg.isdigit():
                out.print("[red]error:[/] /revert needs a version number (0 = the bot’s own instruction); see /instruction")
                continue
            try:
                v = await swarm.revert_instruction(conversation, user_id, int(arg))
                out.print(f"[dim]instruction is now v{v} (a copy of v{arg})[/]")
            except ShoalError as exc:
                out.print(f"[red]error:[/] {exc}")
            continue
        if text == "/memories":
            for m in await swarm.memories.facts(user_id):
                out.print(f"• {m.text}  [dim]({m.attribute}: {m.value}; from {m.sources[0] if m.sources else '?'})[/]")
            continue
        if text in ("/good", "/bad", "/again") or text == "/fix" or text.startswith("/fix "):
            from shoal.cli.learn import chat_again, chat_feedback

            try:
                if text == "/again":
                    await chat_again(swarm, conversation, user_id, out, timeout=timeout)
                else:
                    out.print(await chat_feedback(swarm, conversation, user_id, text))
            except ShoalError as exc:
                out.print(f"[red]error:[/] {exc}")
            continue
        if text == "/new":
            conv = await swarm.conversations.create_conversation(user_id)
            conversation = conv.id
            out.print(f"[dim]new conversation {conversation}[/]")
            continue
        try:
            await _turn(swarm, conversation, user_id, text, timeout)
        except ShoalError as exc:
            out.print(f"[red]error:[/] {exc}")
        except KeyboardInterrupt:
            out.print("[dim](stopped waiting; the background carries on)[/]")


def _reader():  # type: ignore[no-untyped-def]
    """An async line reader: prompt_toolkit on a terminal, plain stdin otherwise."""
    if sys.stdin.isatty():
        from prompt_toolkit import PromptSession

        session: PromptSession[str] = PromptSession()

        async def read_tty(prompt: str) -> str:
            return await session.prompt_async(prompt)

        return read_tty

    async def read_pipe(prompt: str) -> str:
        out.print(prompt, end="")
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            raise EOFError
        return line

    return read_pipe


async def _show_thinking(swarm: Swarm, conversation: str) -> None:
    statuses = await swarm.thinker_status(conversation)
    if not any(s.text for s in statuses):
        out.print("[dim]the thinkers have nothing on their mind yet[/]")
    for s in statuses:
        state = "thinking" if s.thinking else "last thought"
        out.print(Panel(s.text or "…", title=f"{s.bot} — {state}", border_style="magenta"))


@dataclass
class TurnView:
    """What one turn looks like on screen; fed events, rendered by rich."""

    reply: str = ""
    reply_done: bool = False
    settled: bool = False
    route: str = ""
    thoughts: dict[str, list[str]] = field(default_factory=dict)  # thought_id -> [bot, text, status]
    notes: list[str] = field(default_factory=list)
    interjections: list[str] = field(default_factory=list)
    pending_interjections: int = 0
    live_interjection: str | None = None

    def feed(self, ev: Event, turn: str) -> None:
        if isinstance(ev, JournalProblem):
            self.notes.append(f"[{'green' if ev.recovered else 'red'}]journal:[/] {ev.message}")
            return
        if ev.turn != turn:
            return
        if isinstance(ev, ReplyStart) and ev.interjection:
            self.live_interjection = ""
        elif isinstance(ev, ReplyDelta):
            if self.live_interjection is not None:
                self.live_interjection += ev.text
            else:
                self.reply += ev.text
        elif isinstance(ev, ReplyReset):
            if self.live_interjection is not None:
                self.live_interjection = ""
            else:
                self.reply = ""
        elif isinstance(ev, ReplyCheck):
            failed = {k: v for k, v in ev.checks.items() if v != "ok"}
            if failed or ev.action != "accepted":
                why = "; ".join(f"{k}: {v}" for k, v in failed.items()) or "every check passed"
                self.notes.append(f"[yellow]reply check {ev.attempt} → {ev.action}:[/] {why}")
        elif isinstance(ev, ReplyEnd):
            if ev.interjection:
                self.interjections.append(ev.text)
                self.live_interjection = None
                self.pending_interjections = max(0, self.pending_interjections - 1)
            else:
                self.reply = ev.text or self.reply
                self.reply_done = True
                if ev.status != "complete":
                    self.notes.append(f"[red]reply {ev.status}[/] {ev.error or ''}")
        elif isinstance(ev, ModelRoute):
            self.notes.append(f"[blue]model:[/] {escape(ev.text)}")
        elif isinstance(ev, Route):
            self.route = ", ".join(f"{t} ({ev.reasons.get(t, '')})" for t in ev.targets) or "nobody"
        elif isinstance(ev, ThoughtStart):
            self.thoughts[ev.thought_id] = [ev.bot, "", "thinking"]
            if ev.merged_from:
                self.notes.append(f"[dim]{ev.bot} folds {len(ev.merged_from)} unfinished thought(s) into a new one[/]")
        elif isinstance(ev, ThoughtQueued):
            self.notes.append(f"[dim]{ev.bot} queued this turn (position {ev.position})[/]")
        elif isinstance(ev, MonologueStep):
            self.notes.append(f"[magenta]monologue {ev.round}[/] {ev.speaker}: {ev.text}")
        elif isinstance(ev, ActionEnd):
            self.notes.append(f"[blue]{ev.bot} ({ev.template}, {ev.status}):[/] {ev.text or ev.error or ''}")
        elif isinstance(ev, InstructionChanged):
            self.notes.append(f"[yellow]instruction v{ev.version}:[/] {ev.text or '(back to the bot’s own)'}")
        elif isinstance(ev, InstructionProposal) and ev.rule:
            verdict = "accepted" if ev.accepted else f"refused: {ev.problem}"
            self.notes.append(f"[dim]{ev.thinker} proposed “{ev.rule}” for the instruction ({verdict})[/]")
        elif isinstance(ev, ThoughtDelta) and ev.thought_id in self.thoughts:
            self.thoughts[ev.thought_id][1] += ev.text
        elif isinstance(ev, ThoughtEnd):
            self.thoughts[ev.thought_id] = [ev.bot, ev.text, ev.status]
        elif isinstance(ev, MemoryWrite):
            it = ev.item
            if it.kind == "fact":
                sup = " (replaces an older fact)" if it.supersedes else ""
                self.notes.append(f"[yellow]remembered[/] {it.attribute}: {it.value} — “{it.text}”{sup}")
            elif it.kind == "summary":
                self.notes.append("[dim]summarised older messages[/]")
        elif isinstance(ev, MemoryRejected):
            self.notes.append(f"[dim]memory rejected {ev.candidate.get('value')!r}: {ev.reason}[/]")
        elif isinstance(ev, MemoryProposed):
            facts = "; ".join(f"{p.get('attribute')}: {p.get('value')}" for p in ev.pending)
            self.notes.append(f"[yellow]asks before remembering[/] {facts}")
        elif isinstance(ev, MemoryConsent):
            verdict = "stored" if ev.approved else "dropped"
            self.notes.append(f"[yellow]consent:[/] {len(ev.pending_ids)} fact(s) {verdict}")
        elif isinstance(ev, Injection):
            self.notes.append(f"[cyan]primary → conversation ({ev.mode}):[/] {ev.text}")
            if ev.mode == "interject":
                self.pending_interjections += 1
        elif isinstance(ev, TurnSettled):
            self.settled = True
            if ev.timed_out:
                self.notes.append(f"[dim]gave up waiting for {', '.join(ev.timed_out)}[/]")
        elif isinstance(ev, BotError):
            self.notes.append(f"[red]{ev.bot} error:[/] {ev.error}")

    @property
    def finished(self) -> bool:
        return self.reply_done and self.settled and self.pending_interjections == 0

    def render(self) -> Group:
        parts: list = [Panel(Text(self.reply or "…"), title="shoal", border_style="green", title_align="left")]
        head: list = []
        if self.route:
            head.append(Text.from_markup(f"[dim]routed to[/] {self.route}"))
        for bot, text, status in self.thoughts.values():
            head.append(Text.from_markup(f"[magenta]{bot}[/] [dim]({status})[/] ") + Text(text or "…", style="italic"))
        for note in self.notes:
            head.append(Text.from_markup(note))
        if head:
            parts.append(Panel(Group(*head), title="headspace", border_style="magenta", title_align="left"))
        for text in self.interjections + ([self.live_interjection] if self.live_interjection is not None else []):
            parts.append(Panel(Text(text or "…"), title="shoal (interjecting)", border_style="cyan", title_align="left"))
        return Group(*parts)


async def _turn(swarm: Swarm, conversation: str, user_id: str, text: str, timeout: float) -> None:
    listener = swarm.listen(conversation)
    view = TurnView()
    try:
        turn = await swarm.send(conversation, user_id, text)
        deadline = time.monotonic() + timeout
        with Live(view.render(), console=out, refresh_per_second=12, transient=False) as live:
            while not view.finished and time.monotonic() < deadline:
                try:
                    ev = await listener.get(timeout=0.25)
                except asyncio.TimeoutError:
                    continue
                view.feed(ev, turn.message_id)
                live.update(view.render())
            live.update(view.render())
    finally:
        listener.close()
