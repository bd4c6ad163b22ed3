"""Opening the store from a CLI command (no swarm, no model)."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from rich.console import Console

from shoal.config import Settings
from shoal.store.accounts import Accounts
from shoal.store.conversations import User
from shoal.store.db import Database


@asynccontextmanager
async def accounts() -> AsyncIterator[Accounts]:
    settings = Settings()
    settings.ensure_home()
    db = await Database(settings.db_path).open()
    try:
        yield Accounts(db)
    finally:
        await db.close()


@asynccontextmanager
async def person(user: str | None) -> AsyncIterator[tuple[Database, User]]:
    """The database and the person a command acts for: ``user`` by name, else the local CLI user."""
    settings = Settings()
    settings.ensure_home()
    db = await Database(settings.db_path).open()
    try:
        if user:
            who = await Accounts(db).user_by_name(user)
        else:
            from shoal.store.conversations import ConversationStore

            who = await ConversationStore(db).ensure_user("local", is_admin=True)
        yield db, who
    finally:
        await db.close()


def print_erased(out: Console, what: str, erased: Any, *, sources: bool = True) -> None:
    """What an erasure removed, and (``sources``) what it left on purpose: the message a memory came from."""
    out.print(f"{what}; deleted:")
    for d in erased.deleted:
        out.print(f"  • {d}")
    for m in erased.source_messages if sources else []:
        out.print(
            f"[yellow]the message it came from ({m['id']}) is still in conversation {m['conversation']}[/]; "
            f"delete it too with: [bold]shoal messages delete {m['id']}[/] (or `shoal memory forget ID --with-message`)"
        )
