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

    history = await swarm.conversations.history(conversation, limit=20)
    reply = next((m for m in reversed(history) if m.role == "assistant"), None)
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
        for col in ("conversations", "good", "corrected", "bad (left out)", "duplicates", "train", "val"):
            table.add_column(col, justify="right")
        table.add_row(*(str(v) for v in (c.conversations, c.good, c.corrected, c.bad_left_out, c.duplicates, c.train, c.val)))
        out.print(table)
        if not ds.examples:
            out.print("[yellow]nothing to learn from yet:[/] rate replies with /good or /bad in `shoal chat`, correct with /fix")
        print(json.dumps({"path": str(path), **c.as_dict()}))

    asyncio.run(run())
