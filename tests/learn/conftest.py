"""Learning fixtures: people with scripted conversations in a real SQLite store."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

from shoal.store.conversations import ConversationStore, User
from shoal.store.db import Database

T = TypeVar("T")


def run_async(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on a loop of its own (callers may already be inside one)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(fn())).result()  # type: ignore[arg-type]


async def converse(store: ConversationStore, user: User, turns: list[tuple[str, str]], *, bot: str = "conversation") -> list[str]:
    """A conversation of ``(user text, reply)`` turns; the reply ids, in order."""
    conv = await store.create_conversation(user.id)
    ids = []
    for said, reply in turns:
        m = await store.add_message(conv.id, "user", said, user_id=user.id)
        r = await store.add_message(conv.id, "assistant", reply, bot=bot, reply_to=m.id)
        ids.append(r.id)
    return ids


async def open_store(path: Path) -> tuple[Database, ConversationStore]:
    db = await Database(path).open()
    return db, ConversationStore(db)


