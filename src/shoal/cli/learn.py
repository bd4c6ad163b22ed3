"""``shoal learn``: feedback → dataset → LoRA → evaluate in the engine → promote / roll back."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from shoal.cli._db import person
from shoal.errors import BadInput, NotFound

app = typer.Typer(help="Learn from your ratings and corrections: dataset, train, status, promote, rollback.", no_args_is_help=True)
out = Console()

USER = typer.Option(None, "--user", help="whose data (default: the local CLI user)")
BOT = typer.Option(None, "--bot", help="the conversation bot to learn for (default: every conversation bot)")


# ------------------------------------------------------------------ /good /bad /fix in `shoal chat`
async def chat_feedback(swarm: Any, conversation: str, user_id: str, command: str) -> str:
    """Apply ``/good``, ``/bad`` or ``/fix TEXT`` to the last reply of ``conversation``; say what was recorded."""
    from shoal.learn.feedback import FeedbackStore

    reply = await _last_reply(swarm, conversation)
    if reply is None:
        raise NotFound("there is no reply to rate yet", hint="say something first")
    user = await swarm.conversations.get_user(user_id)
    store = FeedbackStore(swarm.db)
    if command == "/good":
        await store.rate(reply.id, user, rating="good")
        return f"[green]👍 recorded[/] [dim](reply {reply.id}; shoal learns from it with `shoal learn dataset`)[/]"
    if command == "/bad":
        await store.rate(reply.id, user, rating="bad")
        return f"[yellow]👎 recorded[/] [dim](reply {reply.id}; `/fix what you wanted` makes it a lesson)[/]"
    text = command.removeprefix("/fix").strip()
    if not text:
        raise BadInput("/fix needs the reply you wanted, e.g. /fix Paris.", hint="type /fix followed by the text")
    await store.rate(reply.id, user, correction=text)
    return f"[green]correction recorded[/] [dim](reply {reply.id} → {text[:60]!r})[/]"


async def _last_reply(swarm: Any, conversation: str) -> Any:
    history = await swarm.conversations.history(conversation, limit=20)
    return next((m for m in reversed(history) if m.role == "assistant" and m.status != "replaced"), None)


async def chat_again(swarm: Any, conversation: str, user_id: str, console: Console, *, timeout: float = 120.0) -> str:
    """``/again`` in ``shoal chat``: have the last reply written again, show it as it streams; the new reply's text."""
    import time

    from rich.live import Live
    from rich.panel import Panel
    from rich.text import Text

    from shoal.learn.regenerate import regenerate
    from shoal.runtime.messages import ReplyDelta, ReplyEnd, ReplyReset, ReplyStart

    reply = await _last_reply(swarm, conversation)
    if reply is None:
        raise NotFound("there is no reply to ask for again yet", hint="say something first")
    user = await swarm.conversations.get_user(user_id)
    listener = swarm.listen(conversation)
    try:
        await regenerate(swarm, reply.id, user)
        new_id, text, done = None, "", False
        deadline = time.monotonic() + timeout
        with Live(Panel(Text("…"), title="shoal (again)", border_style="green", title_align="left"), console=console) as live:
            while not done and time.monotonic() < deadline:
                try:
                    ev = await listener.get(timeout=0.25)
                except asyncio.TimeoutError:
                    continue
                if isinstance(ev, ReplyStart) and ev.replaces == reply.id:
                    new_id = ev.message_id
                elif new_id is not None and getattr(ev, "message_id", None) == new_id:
                    if isinstance(ev, ReplyDelta):
                        text += ev.text
                    elif isinstance(ev, ReplyReset):
                        text = ""
                    elif isinstance(ev, ReplyEnd):
                        text, done = ev.text or text, True
                live.update(Panel(Text(text or "…"), title="shoal (again)", border_style="green", title_align="left"))
    finally:
        listener.close()
    if not done:
        raise BadInput("the new reply did not finish in time", hint="it may still arrive; /again asks once more")
    console.print(f"[dim](the earlier reply {reply.id} is kept as a rejected alternative; /good or /fix this one)[/]")
    return text


# ------------------------------------------------------------------ dataset
def default_dataset_path(user_name: str, bot: str | None) -> Path:
    from shoal.config import Settings

    return Settings().home / "learn" / "datasets" / user_name / f"{bot or 'all'}.jsonl"


@app.command("dataset")
def dataset(
    bot: str = BOT,
    out_file: Path = typer.Option(None, "--out", help="where to write the JSONL (default: under SHOAL_HOME/learn/datasets)"),
    window: int = typer.Option(6, "--window", min=1, max=64, help="messages of history before each reply"),
    val_fraction: float = typer.Option(0.2, "--val", min=0.0, max=0.9, help="share of conversations held out"),
    include_unrated: bool = typer.Option(False, "--include-unrated", help="also unrated replies (memory.consent = always)"),
    user: str = USER,
) -> None:
    """Turn your rated and corrected replies into a chat-format JSONL dataset, split by conversation."""
    from shoal.config import Env
    from shoal.learn.dataset import dataset_for

    env = Env.load()

    async def run() -> None:
        async with person(user) as (db, who):
            ds = await dataset_for(
                db, env.config, who, bot=bot, window=window, val_fraction=val_fraction, include_unrated=include_unrated
            )
        path = out_file or default_dataset_path(who.name, bot)
        ds.write(path)
        c = ds.counts
        table = Table(title=f"dataset of {who.name} → {path}")
        cols = ("conversations", "good", "corrected", "bad (left out)", "asked again (left out)", "duplicates", "train", "val")
        for col in cols:
            table.add_column(col, justify="right")
        table.add_row(*(str(v) for v in (
            c.conversations, c.good, c.corrected, c.bad_left_out, c.replaced_left_out, c.duplicates, c.train, c.val,
        )))
        out.print(table)
        if not ds.examples:
            out.print("[yellow]nothing to learn from yet:[/] rate replies with /good or /bad in `shoal chat`, correct with /fix")
        print(json.dumps({"path": str(path), **c.as_dict()}))

    asyncio.run(run())


# ------------------------------------------------------------------ train
def _bot_name(config: Any, bot: str | None) -> str:
    if bot:
        return str(config.bot(bot).name)
    convs = config.bots_with_role("conversation")
    if not convs:
        raise BadInput("no conversation bot to learn for", hint="name one with --bot")
    return str(convs[0].name)


def base_gguf(config: Any, bot: str) -> Path:
    """The GGUF the bot is served from (its server's model_path, else the shipped SmolLM2)."""
    from shoal.learn.base import served_gguf

    return served_gguf(config, bot)


def runs_dir(home: Path, bot: str) -> Path:
    return home / "learn" / "runs" / bot


def _last_unfinished(home: Path, bot: str) -> Path | None:
    root = runs_dir(home, bot)
    if not root.is_dir():
        return None
    for run in sorted(root.iterdir(), reverse=True):
        meta = run / "run.json"
        if meta.is_file() and not json.loads(meta.read_text()).get("finished"):
            return run
    return None


@app.command("train")
def train_cmd(
    bot: str = BOT,
    dataset_file: Path = typer.Option(None, "--dataset", help="the JSONL from `shoal learn dataset` (default: its default path)"),
    steps: int = typer.Option(None, "--steps", min=1, help="optimiser steps (default: --epochs over the data)"),
    epochs: float = typer.Option(3.0, "--epochs", min=0.01),
    rank: int = typer.Option(8, "--rank", min=1, max=256),
    lr: float = typer.Option(1e-3, "--lr", min=0.0),
    batch: int = typer.Option(4, "--batch", min=1, max=256, help="examples per step"),
    threads: int = typer.Option(2, "--threads", min=1, max=64),
    resume: bool = typer.Option(False, "--resume", help="continue the last interrupted run of this bot"),
    promote_after: bool = typer.Option(False, "--promote", help="then promote it if it beats what is served"),
    user: str = USER,
) -> None:
    """Fine-tune a LoRA on your dataset, at the lowest priority, pausing while a reply is being written."""
    from shoal.learn.train import lowest_priority

    nice = lowest_priority()  # first: the threads torch starts later inherit it
    from shoal.config import Env
    from shoal.learn.adapters import AdapterRegistry
    from shoal.learn.dataset import read_jsonl
    from shoal.learn.evaluate import canary_set
    from shoal.learn.train import TrainConfig, train
    from shoal.store.ids import new_id

    env = Env.load()
    home = env.settings.ensure_home()
    name = _bot_name(env.config, bot)
    if dataset_file is None:
        async def who() -> str:
            async with person(user) as (_, u):
                return str(u.name)

        dataset_file = default_dataset_path(asyncio.run(who()), bot)
    examples = read_jsonl(dataset_file)
    gguf = base_gguf(env.config, name)
    cfg = TrainConfig(rank=rank, alpha=2.0 * rank, lr=lr, epochs=epochs, batch=batch, max_steps=steps, threads=threads)
    if resume:
        run_dir = _last_unfinished(home, name)
        if run_dir is None:
            raise BadInput(f"no interrupted run of bot '{name}' to resume", hint="leave out --resume to start one")
    else:
        run_dir = runs_dir(home, name) / new_id()
    n_train = sum(1 for e in examples if e.get("split", "train") == "train")
    out.print(
        f"training a rank-{rank} LoRA for [bold]{name}[/] on {n_train} examples ({len(examples) - n_train} held out) → {run_dir}\n"
        f"[dim]at the lowest priority (nice {nice}), {threads} thread(s), pausing while a reply is being written; "
        "Ctrl-C stops and keeps a checkpoint (--resume continues)[/]"
    )
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[bold]train[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
        TextColumn("[dim]{task.fields[note]}[/]"), TimeElapsedColumn(), TimeRemainingColumn(), console=out,
    ) as bar:
        task = bar.add_task("train", total=None, loss="…", note="loading the model")

        def progress(step: int, total: int, loss: float | None, note: str) -> None:
            fields: dict[str, Any] = {"note": note}
            if loss is not None:
                fields["loss"] = f"{loss:.3f}"
            bar.update(task, completed=step, total=total, **fields)

        result = train(home, gguf, examples, run_dir, cfg, canary=canary_set(), resume=resume, progress=progress)
    if not result.finished:
        out.print(
            f"[yellow]interrupted at step {result.steps}[/]; checkpoint kept in {run_dir}. "
            "Continue with [bold]shoal learn train --resume[/]. The served adapter is unchanged."
        )
        raise typer.Exit(130)
    version = AdapterRegistry(home, name).add_candidate(run_dir, [e for e in examples if e.get("split") == "val"])
    table = Table(title=f"{name} {version}: {result.steps} steps, {result.tokens_per_second:.0f} tok/s")
    for col in ("", "base", "tuned"):
        table.add_column(col, justify="right")
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    table.add_row("validation loss", fmt(result.val_loss_base), fmt(result.val_loss_tuned))
    table.add_row("canary loss", fmt(result.canary_loss_base), fmt(result.canary_loss_tuned))
    out.print(table)
    out.print(f"loss curve: {run_dir / 'loss.png'}\nserve it with: [bold]shoal learn promote {version} --bot {name}[/]")
    if promote_after:
        _promote(env, home, name, version, 0.10, False)


# ------------------------------------------------------------------ status / promote / rollback
@app.command("status")
def status(bot: str = BOT, as_json: bool = typer.Option(False, "--json")) -> None:
    """The adapters of a bot: which is served, their scores, interrupted runs."""
    from shoal.config import Env
    from shoal.learn.adapters import AdapterRegistry

    env = Env.load()
    home = env.settings.home
    name = _bot_name(env.config, bot)
    reg = AdapterRegistry(home, name)
    cards = [reg.card(v) for v in reg.versions()]
    current = reg.current
    if as_json:
        print(json.dumps({"bot": name, "served": current, "versions": cards, "log": reg.history()}, default=str))
        return
    table = Table(title=f"adapters of {name} — served: {current or 'base model (no adapter)'}")
    for col in ("version", "served", "steps", "val base", "val tuned", "canary base", "canary tuned", "tok/s"):
        table.add_column(col, justify="right")
    fmt = lambda x: "" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)  # noqa: E731
    for c in cards:
        table.add_row(
            c["version"], "●" if c["version"] == current else "", fmt(c.get("steps")), fmt(c.get("val_loss_base")),
            fmt(c.get("val_loss_tuned")), fmt(c.get("canary_loss_base")), fmt(c.get("canary_loss_tuned")),
            fmt(c.get("tokens_per_second")),
        )
    out.print(table)
    pending = _last_unfinished(home, name)
    if pending:
        out.print(f"[yellow]an interrupted run waits in {pending}[/]: `shoal learn train --resume` continues it")


def _promote(env: Any, home: Path, name: str, version: str | None, margin: float, force: bool) -> None:
    from shoal.learn.adapters import AdapterRegistry
    from shoal.learn.base import gguf_fingerprint
    from shoal.learn.evaluate import EngineEvaluator, canary_set

    reg = AdapterRegistry(home, name)
    versions = reg.versions()
    if not versions:
        raise BadInput(f"bot '{name}' has no trained adapters", hint="train one with `shoal learn train`")
    version = version or versions[-1]
    gguf = base_gguf(env.config, name)
    with out.status(f"scoring {version} against what is served, in llama.cpp…"):
        ev = EngineEvaluator(gguf)
        try:
            decision = reg.promote(
                version, ev, canary_set(), canary_margin=margin, force=force, base_fingerprint=gguf_fingerprint(gguf)
            )
        finally:
            ev.close()
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    table = Table(title=f"{name}: {version} against {decision.current and 'the served adapter' or 'what was served'}")
    for col in ("", "served", version):
        table.add_column(col, justify="right")
    table.add_row("validation loss", fmt(decision.current["val_loss"]), fmt(decision.candidate["val_loss"]))
    table.add_row("canary loss", fmt(decision.current["canary_loss"]), fmt(decision.candidate["canary_loss"]))
    out.print(table)
    if decision.promoted:
        out.print(f"[green]promoted {version}[/]: {decision.reason}")
    else:
        out.print(f"[yellow]not promoted[/]: {decision.reason}; still served: {decision.served or 'the base model'}")
    print(json.dumps(decision.as_dict()))


@app.command("promote")
def promote(
    version: str = typer.Argument(None, help="the version (default: the newest)"),
    bot: str = BOT,
    canary_margin: float = typer.Option(0.10, "--canary-margin", min=0.0, help="canary loss rise allowed (nats/token)"),
    force: bool = typer.Option(False, "--force", help="serve it even if it does not beat what is served"),
) -> None:
    """Serve an adapter if it beats the served one on validation without losing on the canary set."""
    from shoal.config import Env

    env = Env.load()
    _promote(env, env.settings.home, _bot_name(env.config, bot), version, canary_margin, force)


@app.command("rollback")
def rollback(bot: str = BOT) -> None:
    """Serve what was served before the current adapter (down to the base model)."""
    from shoal.config import Env
    from shoal.learn.adapters import AdapterRegistry

    env = Env.load()
    name = _bot_name(env.config, bot)
    now = AdapterRegistry(env.settings.home, name).rollback()
    out.print(f"bot {name} now serves {now or 'the base model (no adapter)'}")
