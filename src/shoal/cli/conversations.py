"""``shoal conversations`` and ``shoal messages``: list them, show one, delete them with what was made from them."""

from __future__ import annotations

import asyncio
from datetime import datetime

import typer
from rich.console import Console
from rich.table import Table

from shoal.cli._db import person, print_erased
from shoal.memory.forget import Eraser
from shoal.memory.store import MemoryStore
from shoal.store.conversations import ConversationStore

app = typer.Typer(help="Conversations: list, show, delete (with every memory and event made from them).", no_args_is_help=True)
messages = typer.Typer(help="Messages: delete one with the reply to it and everything made from them.", no_args_is_help=True)
out = Console()

USER = typer.Option(None, "--user", help="whose (default: the local CLI user)")


def _when(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")


@app.command("list")
def list_(limit: int = typer.Option(50, "--limit"), user: str = USER) -> None:
    """Conversations, newest first."""

    async def run() -> None:
        async with person(user) as (db, who):
            convs = await ConversationStore(db).list_conversations(who.id, limit=limit)
        table = Table(title=f"conversations of {who.name}")
        for col in ("id", "title", "room", "updated"):
            table.add_column(col, overflow="fold")
        for c in convs:
            table.add_row(c.id, c.title, c.room or "", _when(c.updated_at))
        out.print(table)

    asyncio.run(run())


@app.command("show")
def show(conversation_id: str, limit: int = typer.Option(50, "--limit"), user: str = USER) -> None:
    """The last messages of a conversation, with their ids (to delete one)."""

    async def run() -> None:
        async with person(user) as (db, who):
            store = ConversationStore(db)
            conv = await store.get_conversation(conversation_id, user_id=who.id)
            msgs = await store.history(conv.id, limit=limit)
        table = Table(title=conv.title or conv.id)
        for col in ("id", "who", "message", "when"):
            table.add_column(col, overflow="fold")
        for m in msgs:
            table.add_row(m.id, m.bot or m.role, m.content, _when(m.created_at))
        out.print(table)

    asyncio.run(run())


@app.command("delete")
def delete(conversation_id: str, user: str = USER) -> None:
    """Delete a conversation with its messages and every memory, thought and event made from them."""

    async def run() -> None:
        async with person(user) as (db, who):
            erased = await Eraser(db, MemoryStore(db)).delete_conversation(
                conversation_id, user_id=who.id, is_admin=who.is_admin
            )
        print_erased(out, f"deleted conversation {conversation_id}", erased)

    asyncio.run(run())


@messages.command("delete")
def delete_message(message_id: str, user: str = USER) -> None:
    """Delete a message, the reply to it, and every memory, thought and event made from them."""

    async def run() -> None:
        async with person(user) as (db, who):
            erased = await Eraser(db, MemoryStore(db)).delete_message(message_id, user_id=who.id, is_admin=who.is_admin)
        print_erased(out, f"deleted message {message_id}", erased)

    asyncio.run(run())
