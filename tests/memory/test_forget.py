"""Forgetting through the swarm: a memory, a message, a conversation, a person — with everything made from them.

Each test runs real turns (the embedded model, the memory bot, the primary's
instruction, the journal) and then looks at every row of every table, and at
the bytes of the database file and its WAL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shoal.config import Env
from shoal.runtime.swarm import Swarm
from shoal.store.db import Conn


def traces(c: Conn, needle: str, *, except_messages: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    """Every table (and row) where ``needle`` occurs, in any case, outside the messages named."""
    found = []
    low = needle.lower().encode()
    for (table,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
        cols = [r[1] for r in c.execute(f'PRAGMA table_info("{table}")')]
        for row in c.execute(f'SELECT * FROM "{table}"').fetchall():
            cells = dict(zip(cols, row))
            if table == "messages" and cells.get("id") in except_messages:
                continue
            for value in row:
                raw = value.encode() if isinstance(value, str) else value if isinstance(value, bytes) else None
                if raw and low in raw.lower():
                    found.append(f"{table}: {str(cells)[:160]}")
                    break
    return found


def file_bytes(db_path: Path) -> bytes:
    data = db_path.read_bytes()
    wal = db_path.with_name(db_path.name + "-wal")
    return data + (wal.read_bytes() if wal.exists() else b"")


async def test_a_forgotten_memory_leaves_its_words_only_in_the_source_message_and_deleting_that_leaves_no_byte(
    env: Env,
) -> None:
    token = "Quorvaleth"
    async with Swarm(env) as swarm:
        user = await swarm.local_user()
        conv = (await swarm.conversations.create_conversation(user.id)).id
        first = await swarm.run_turn(conv, user.id, f"Hi, I'm Ana and I live in {token}.", timeout=240)
        assert first.settled
        # a later turn is given the memory (recall, and the instruction line built from it)
        second = await swarm.run_turn(conv, user.id, "Where do I live?", timeout=240)
        assert second.settled
        facts = [m for m in await swarm.memories.facts(user.id) if token.lower() in m.text.lower()]
        assert [f.attribute for f in facts] == ["location"]
        _version, instruction = await swarm.conversations.instruction(conv)
        assert token in instruction  # "Remembered about the user (location): Quorvaleth"
        events = await swarm.journal.replay(conv, 0)
        assert any(token in e.model_dump_json() for e in events if e.kind == "memory.write")

        erased = await swarm.forget_memory(facts[0].id, user)
        # the source message stays, and the caller is told which one it is
        assert [m["id"] for m in erased.source_messages] == [first.turn]
        assert await swarm.db.read(lambda c: traces(c, token, except_messages={first.turn})) == []
        _version, instruction = await swarm.conversations.instruction(conv)
        assert token not in instruction
        # the other fact of that message is still there, in its own words
        assert any(m.attribute == "name" and m.value == "Ana" for m in await swarm.memories.facts(user.id))
        assert all(token not in m.text for m in await swarm.memories.search(user.id, f"I live in {token}", limit=10))
        assert (await swarm.conversations.get_message(first.turn)).content.endswith(f"{token}.")

        await swarm.delete_message(first.turn, user)
        assert await swarm.db.read(lambda c: traces(c, token)) == []
        # the bytes of the file and its WAL, right now, while the swarm runs
        assert token.lower().encode() not in file_bytes(swarm.env.settings.db_path).lower()
    assert token.lower().encode() not in file_bytes(env.settings.db_path).lower()


async def test_deleting_a_message_deletes_the_reply_and_every_memory_thought_and_event_made_from_it(env: Env) -> None:
    async with Swarm(env) as swarm:
        user = await swarm.local_user()
        conv = (await swarm.conversations.create_conversation(user.id)).id
        keep = await swarm.run_turn(conv, user.id, "I love climbing.", timeout=240)
        gone = await swarm.run_turn(conv, user.id, "My name is Tamsin and I work as a glassblower.", timeout=240)
        assert keep.settled and gone.settled
        thoughts = await swarm.conversations.thoughts(conv, turn_id=gone.turn)
        assert thoughts, "the thinker thought about it (routing rule 'about the user')"
        await swarm.delete_message(gone.turn, user)
        left = await swarm.conversations.history(conv, limit=50)
        assert [m.id for m in left if m.role == "user"] == [keep.turn]
        assert all(m.reply_to != gone.turn for m in left)  # the reply went with it
        assert await swarm.conversations.thoughts(conv, turn_id=gone.turn) == []
        assert [e for e in await swarm.journal.replay(conv, 0) if e.turn == gone.turn] == []
        facts = await swarm.memories.facts(user.id)
        assert {f.value for f in facts} == {"climbing"}
        for word in ("Tamsin", "glassblower"):
            assert await swarm.db.read(lambda c, w=word: traces(c, w)) == [], word


async def test_deleting_a_conversation_or_a_person_leaves_nothing_of_them_in_any_table(env: Env) -> None:
    async with Swarm(env) as swarm:
        ana = await swarm.local_user()
        bob = await swarm.conversations.ensure_user("bob")
        a = (await swarm.conversations.create_conversation(ana.id)).id
        b = (await swarm.conversations.create_conversation(bob.id)).id
        assert (await swarm.run_turn(a, ana.id, "My name is Ana and I live in Porto.", timeout=240)).settled
        assert (await swarm.run_turn(b, bob.id, "My name is Bob and my dog is called Waffleton.", timeout=240)).settled
        await swarm.delete_conversation(a, ana)
        assert await swarm.db.read(lambda c: traces(c, "Porto")) == []
        assert await swarm.memories.count(ana.id) == 0

        await swarm.remove_user(bob.id)

        def rows_of(c: Conn) -> list[str]:
            return traces(c, bob.id) + traces(c, "Waffleton") + traces(c, b)

        assert await swarm.db.read(rows_of) == []
        # nothing orphaned beside the memories table: FTS, vectors, index counters
        counts: dict[str, Any] = await swarm.db.read(
            lambda c: {
                t: c.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("memories", "memory_fts", "memory_vectors", "memory_sources")
            }
        )
        assert counts == {"memories": 0, "memory_fts": 0, "memory_vectors": 0, "memory_sources": 0}


async def test_forgetting_text_with_like_wildcards_scrubs_only_that_text(env: Env) -> None:
    async with Swarm(env) as swarm:
        user = await swarm.local_user()
        mem = swarm.memories
        conv = (await swarm.conversations.create_conversation(user.id)).id
        first, _ = await mem.add(user.id, "raw", "I scored 100% on test_a today.", sources=["m1"], conversation_id=conv)
        second, _ = await mem.add(
            user.id, "raw", "I scored 1000 on testXa.", sources=["m2"], conversation_id=conv,
            before=first.text, previous=first.id,
        )
        await swarm.forget_memory(first.id, user)
        # the neighbour's context lost exactly the forgotten text; a look-alike is untouched
        ctx = await swarm.db.read(
            lambda c: c.execute("SELECT context FROM memory_fts WHERE memory_id = ?", (second.id,)).fetchone()[0]
        )
        assert "100%" not in ctx and "test_a" not in ctx
        assert (await mem.get(second.id)).text == "I scored 1000 on testXa."
