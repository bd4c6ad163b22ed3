"""``shoal memory``: what shoal remembers about you — list, search, forget, export."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from datetime import datetime
from typing import AsyncIterator

import typer
from rich.console import Console
from rich.table import Table

from shoal.config import Settings
from shoal.memory.store import MemoryStore
from shoal.store.accounts import Accounts
from shoal.store.conversations import User
from shoal.store.db import Database

app = typer.Typer(help="What shoal remembers: list, search, forget, export.", no_args_is_help=True)
out = Console()

USER = typer.Option(None, "--user", help="whose memories (default: the local CLI user)")


@asynccontextmanager
async def opened(user: str | None) -> AsyncIterator[tuple[MemoryStore, User]]:
    settings = Settings()
    settings.ensure_home()
    db = await Database(settings.db_path).open()
    try:
        acc = Accounts(db)
        if user:
            who = await acc.user_by_name(user)
        else:
            from shoal.store.conversations import ConversationStore

            who = await ConversationStore(db).ensure_user("local", is_admin=True)
        yield MemoryStore(db), who
    finally:
        await db.close()


def show(memories: list, title: str) -> None:  # type: ignore[type-arg]
    table = Table(title=title)
    for col in ("id", "kind", "memory", "attribute", "from message", "when"):
        table.add_column(col, overflow="fold")
    for m in memories:
        table.add_row(
            m.id,
            m.kind + (" (replaced)" if m.superseded_by else ""),
            m.text,
            f"{m.attribute}: {m.value}" if m.attribute else "",
            ", ".join(m.sources),
            datetime.fromtimestamp(m.created_at).strftime("%Y-%m-%d %H:%M"),
        )
    out.print(table)


@app.command("list")
def list_(
    kind: str = typer.Option(None, "--kind", help="raw, fact, summary or observation"),
    history: bool = typer.Option(False, "--history", help="include facts that were replaced"),
    limit: int = typer.Option(50, "--limit"),
    user: str = USER,
) -> None:
    """List memories, newest first."""

    async def run() -> None:
        async with opened(user) as (store, who):
            show(await store.list(who.id, kind=kind, include_superseded=history, limit=limit), f"memories of {who.name}")

    asyncio.run(run())


@app.command("search")
def search(query: str, limit: int = typer.Option(10, "--limit"), user: str = USER) -> None:
    """Hybrid search (meaning + keywords + recency)."""

    async def run() -> None:
        async with opened(user) as (store, who):
            with out.status("loading the embedding model…"):
                await store.embedder.warm_up()
            show(await store.search(who.id, query, limit=limit), f"memories of {who.name} matching {query!r}")

    asyncio.run(run())


@app.command("forget")
def forget(memory_id: str, user: str = USER) -> None:
    """Delete a memory for good and say what was deleted."""

    async def run() -> None:
        async with opened(user) as (store, who):
            deleted = await store.forget(memory_id, user_id=who.id)
        out.print(f"forgot {memory_id}; deleted:")
        for d in deleted:
            out.print(f"  • {d}")

    asyncio.run(run())


@app.command("export")
def export(user: str = USER) -> None:
    """Print every memory (history included) with its source messages, as JSON lines."""

    async def run() -> None:
        async with opened(user) as (store, who):
            for row in await store.export(who.id):
                print(json.dumps(row, ensure_ascii=False))

    asyncio.run(run())
