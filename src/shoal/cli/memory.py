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

from shoal.cli._db import person, print_erased
from shoal.memory.forget import Eraser
from shoal.memory.store import MemoryStore
from shoal.store.conversations import User

app = typer.Typer(help="What shoal remembers: list, search, forget, export.", no_args_is_help=True)
out = Console()

USER = typer.Option(None, "--user", help="whose memories (default: the local CLI user)")


@asynccontextmanager
async def opened(user: str | None) -> AsyncIterator[tuple[MemoryStore, User]]:
    async with person(user) as (db, who):
        yield MemoryStore(db), who


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
def forget(
    memory_id: str,
    with_message: bool = typer.Option(
        False, "--with-message", help="also delete the message it came from (and the reply to it)"
    ),
    user: str = USER,
) -> None:
    """Forget a memory and every copy made from it; say what was deleted and what was kept."""

    async def run() -> None:
        async with opened(user) as (store, who):
            eraser = Eraser(store.db, store)
            erased = await eraser.forget_memory(memory_id, user_id=who.id)
            print_erased(out, f"forgot {memory_id}", erased, sources=not with_message)
            if with_message:
                for m in erased.source_messages:
                    gone = await eraser.delete_message(m["id"], user_id=who.id, is_admin=who.is_admin)
                    print_erased(out, f"deleted message {m['id']}", gone)

    asyncio.run(run())


@app.command("export")
def export(user: str = USER) -> None:
    """Print every memory (history included) with its source messages, as JSON lines."""

    async def run() -> None:
        async with opened(user) as (store, who):
            for row in await store.export(who.id):
                print(json.dumps(row, ensure_ascii=False))

    asyncio.run(run())
