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
BOT = typer.Option(
    None, "--bot", help="the conversation bot to learn for (default: every conversation bot); memory.extraction: the extraction adapter"
)


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
    from shoal.learn.extraction import EXTRACTION_ADAPTERS

    if bot == EXTRACTION_ADAPTERS:  # the memory bot's extraction adapter: status and rollback work on it too
        return bot
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
    result = _train_with_bar(
        lambda progress: train(home, gguf, examples, run_dir, cfg, canary=canary_set(), resume=resume, progress=progress)
    )
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


# ------------------------------------------------------------------ the memory extraction adapter (issue 14 item 6)
@app.command("extraction")
def extraction_cmd(
    examples: int = typer.Option(240, "--examples", min=1, max=100_000, help="generated training messages"),
    steps: int = typer.Option(None, "--steps", min=1, help="optimiser steps (default: one epoch over --examples)"),
    rank: int = typer.Option(8, "--rank", min=1, max=256),
    lr: float = typer.Option(2e-3, "--lr", min=0.0),
    batch: int = typer.Option(4, "--batch", min=1, max=256, help="examples per step"),
    threads: int = typer.Option(2, "--threads", min=1, max=64),
    seed: int = typer.Option(0, "--seed", help="the generator's seed (the same seed, the same messages)"),
    labelled: list[Path] = typer.Option(
        None, "--labelled", help="hand-labelled messages (JSON) to judge by (default: bench/data/quality/ of a checkout)"
    ),
    version: str = typer.Option(None, "--version", help="judge this trained version again instead of training one"),
    promote_it: bool = typer.Option(True, "--promote/--no-promote", help="serve it when it beats what is served"),
    show: int = typer.Option(0, "--show", min=0, help="print this many missed and wrong facts of each"),
) -> None:
    """Train the memory bot's fact-extraction LoRA on generated messages; serve it if it beats the base.

    Judged on a labelled set written by hand (not generated): what the memory bot would store —
    rules + model candidates + grounding — with what is served now and with the candidate. It is
    served (`[memory] extraction_adapter = "latest"`) when recall rises and precision does not fall.
    """
    from shoal.learn.train import lowest_priority

    nice = lowest_priority()
    from shoal.config import Env
    from shoal.learn.adapters import AdapterRegistry
    from shoal.learn.base import gguf_fingerprint
    from shoal.learn.extraction import EXTRACTION_ADAPTERS, check_adapter, default_labelled, read_labelled
    from shoal.learn.train import TrainConfig
    from shoal.store.ids import new_id

    env = Env.load()
    home = env.settings.ensure_home()
    items = read_labelled(labelled or default_labelled())
    memory = env.config.bots_with_role("memory")
    gguf = base_gguf(env.config, memory[0].name) if memory else base_gguf_default()
    fingerprint = gguf_fingerprint(gguf)
    reg = AdapterRegistry(home, EXTRACTION_ADAPTERS)
    if version is None:
        cfg = TrainConfig(rank=rank, alpha=2.0 * rank, lr=lr, epochs=1.0, batch=batch, max_steps=steps,
                          max_tokens=160, threads=threads, seed=seed)
        run_dir = runs_dir(home, EXTRACTION_ADAPTERS) / new_id()
        out.print(f"training the extraction LoRA (rank {rank}) on {examples} generated messages → {run_dir}\n"
                  f"[dim]nice {nice}, {threads} thread(s), pausing while a reply is being written[/]")
        result = _train_with_bar(lambda progress: _train_extraction(home, gguf, run_dir, cfg, examples, seed, progress))
        if not result.finished:
            out.print("[yellow]interrupted[/]: nothing was added; what is served is unchanged")
            raise typer.Exit(130)
        version = reg.add_candidate(run_dir, [])
        out.print(f"{version}: {result.steps} steps, {result.tokens_per_second:.0f} tok/s, "
                  f"generated validation loss {result.val_loss_base:.3f} → {result.val_loss_tuned:.3f}")
    candidate = reg.path_of(version)
    assert candidate is not None
    check_adapter(gguf, candidate, fingerprint)  # a damaged or foreign file: a clear error, nothing changes
    served = reg.current
    figures = asyncio.run(_judge_extraction(env, gguf, items, reg.path_of(served), candidate))
    from shoal.learn.extraction import decide

    promoted, reason = decide(figures["served"]["all"], figures["candidate"]["all"])
    table = Table(title=f"extraction on {len(items)} labelled messages: {served or 'base model'} vs {version}")
    for col in ("set", "recall", "", "precision", " ", "facts on questions"):
        table.add_column(col, justify="right")
    for name in figures["served"]:
        a, b = figures["served"][name], figures["candidate"][name]
        table.add_row(name, f"{a.recall:.3f}", f"→ {b.recall:.3f}", f"{a.precision:.3f}", f"→ {b.precision:.3f}",
                      f"{a.false_on_questions} → {b.false_on_questions}")
    out.print(table)
    for what in ("misses", "wrong"):
        for row in getattr(figures["candidate"]["all"], what)[:show]:
            out.print(f"[dim]{version} {what}:[/] {row}")
    scores = {side: {k: v.as_dict() for k, v in figures[side].items()} for side in ("served", "candidate")}
    reg.annotate(version, extraction=scores["candidate"], judged_against={"version": served, **scores["served"]})
    if promote_it:
        decision = reg.decide(version, promoted, reason, scores["candidate"]["all"], scores["served"]["all"])
        if decision.promoted:
            out.print(f"[green]promoted {version}[/]: {reason}; the memory bot uses it (memory.extraction_adapter = "
                      f"\"{env.config.memory.extraction_adapter}\")")
        else:
            out.print(f"[yellow]not promoted[/]: {reason}; still served: {decision.served or 'the base model'}")
    else:
        out.print(f"{'would promote' if promoted else 'would not promote'}: {reason}")
    print(json.dumps({"version": version, "promoted": promoted and promote_it, "reason": reason, **scores}))


def base_gguf_default() -> Path:
    from shoal.engine.llama import default_model_path

    return default_model_path()


def _train_extraction(home: Path, gguf: Path, run_dir: Path, cfg: Any, n: int, seed: int, progress: Any) -> Any:
    from shoal.learn.extraction import train_extraction

    return train_extraction(home, gguf, run_dir, cfg, n_train=n, seed=seed, progress=progress)


def _train_with_bar(run: Any) -> Any:
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

        return run(progress)


async def _judge_extraction(env: Any, gguf: Path, items: list[dict[str, Any]], served: Path | None, candidate: Path) -> dict[str, Any]:
    """FactScores per labelled file and overall, for what is served and for the candidate."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from shoal.backends.embedded import EmbeddedBackend
    from shoal.learn.extraction import score_sets

    backend = EmbeddedBackend("extraction", model_path=gguf, engine=env.config.engine)
    figures: dict[str, Any] = {}
    try:
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=out) as bar:
            for side, path in (("served", served), ("candidate", candidate)):
                task = bar.add_task(f"{side}: {path.parent.name if path else 'base model'}", total=len(items))
                figures[side] = await score_sets(backend, items, adapter=str(path or ""), progress=lambda: bar.advance(task))
    finally:
        await backend.aclose()
    return figures
