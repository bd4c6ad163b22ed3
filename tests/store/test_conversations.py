"""The SQLite store: migrations, messages, isolation, the event log."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.errors import NotFound
from shoal.store.conversations import ConversationStore
from shoal.store.db import Database
from shoal.store.ids import new_id
from shoal.store.migrations import MIGRATIONS


async def open_store(path: Path) -> tuple[Database, ConversationStore]:
    db = await Database(path).open()
    return db, ConversationStore(db)


async def test_migrations_run_once_in_order_and_are_recorded(tmp_path: Path) -> None:
    db, _ = await open_store(tmp_path / "s.db")
    names = await db.read(lambda c: [r[0] for r in c.execute("SELECT name FROM _migrations ORDER BY name")])
    assert names == sorted(MIGRATIONS)
    await db.close()
    db2, _ = await open_store(tmp_path / "s.db")  # reopening applies nothing twice
    again = await db2.read(lambda c: c.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0])
    assert again == len(MIGRATIONS)
    await db2.close()


async def test_messages_survive_a_reopen_and_come_back_oldest_first(tmp_path: Path) -> None:
    db, store = await open_store(tmp_path / "s.db")
    user = await store.ensure_user("ana")
    conv = await store.create_conversation(user.id)
    for i in range(5):
        await store.add_message(conv.id, "user" if i % 2 == 0 else "assistant", f"m{i}")
    await db.close()
    db, store = await open_store(tmp_path / "s.db")
    hist = await store.history(conv.id, limit=3)
    assert [m.content for m in hist] == ["m2", "m3", "m4"]
    assert (await store.get_conversation(conv.id)).title == "m0"
    await db.close()


async def test_another_users_conversation_is_not_found(tmp_path: Path) -> None:
    db, store = await open_store(tmp_path / "s.db")
    ana, bob = await store.ensure_user("ana"), await store.ensure_user("bob")
    conv = await store.create_conversation(ana.id)
    assert (await store.get_conversation(conv.id, user_id=ana.id)).id == conv.id
    with pytest.raises(NotFound):
        await store.get_conversation(conv.id, user_id=bob.id)
    assert await store.list_conversations(bob.id) == []
    await db.close()


async def test_a_failed_write_rolls_back_entirely(tmp_path: Path) -> None:
    db, store = await open_store(tmp_path / "s.db")
    user = await store.ensure_user("ana")

    def half(c) -> None:  # type: ignore[no-untyped-def]
        c.execute("INSERT INTO conversations (id, user_id, title, created_at, updated_at) VALUES ('x', ?, '', 0, 0)", (user.id,))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await db.write(half)
    assert await db.read(lambda c: c.execute("SELECT COUNT(*) FROM conversations").fetchone()[0]) == 0
    await db.close()


async def test_the_event_log_compacts_deltas_once_their_stream_ends(tmp_path: Path) -> None:
    db, store = await open_store(tmp_path / "s.db")
    user = await store.ensure_user("ana")
    conv = await store.create_conversation(user.id)
    rows = [(conv.id, i, "reply.delta", "c", "m1", f'{{"n": {i}}}', 0.0, "t1") for i in range(1, 4)]
    await store.append_events(rows)
    assert len(await store.events_since(conv.id, 0)) == 3
    await store.append_events([(conv.id, 4, "reply.end", "c", "m1", '{"n": 4}', 0.0, "t1")])
    assert await store.events_since(conv.id, 0) == [{"n": 4}]
    assert await store.max_seq(conv.id) == 4
    await db.close()


def test_ids_are_unique_and_sort_by_creation() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == 2000 and ids == sorted(ids) and all(len(i) == 26 for i in ids)
