"""Ordered schema migrations, recorded in ``_migrations``.

A migration is a function decorated with ``@migration``; they run in name
order, once each, inside the writer's transaction. Never edit one that has
shipped: add the next.
"""

from __future__ import annotations

import time
from typing import Any, Callable

Migration = Callable[[Any], None]
MIGRATIONS: dict[str, Migration] = {}


def migration(fn: Migration) -> Migration:
    if fn.__name__ in MIGRATIONS:
        raise ValueError(f"duplicate migration {fn.__name__}")
    MIGRATIONS[fn.__name__] = fn
    return fn


def apply_migrations(conn: Any) -> list[str]:
    # other modules register their migrations where their tables are used
    import shoal.edge.schema  # noqa: F401  (the hub's edge_* tables)
    import shoal.memory.schema  # noqa: F401
    import shoal.store.accounts  # noqa: F401

    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    done = {r[0] for r in conn.execute("SELECT name FROM _migrations")}
    applied = []
    for name in sorted(MIGRATIONS):
        if name in done:
            continue
        MIGRATIONS[name](conn)
        conn.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", (name, time.time()))
        applied.append(name)
    return applied


def run_script(conn: Any, script: str) -> None:
    """Execute several statements inside the current transaction.

    ``executescript`` would COMMIT first, breaking the migration's atomicity.
    """
    import sqlite3

    stmt = ""
    for line in script.splitlines(keepends=True):
        stmt += line
        if sqlite3.complete_statement(stmt):
            conn.execute(stmt)
            stmt = ""
    if stmt.strip():
        conn.execute(stmt)


@migration
def m001_core(conn: Any) -> None:
    run_script(
        conn,
        """
        CREATE TABLE users (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            is_admin INTEGER NOT NULL DEFAULT 0,
            password_hash TEXT,
            created_at REAL NOT NULL
        );
        CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            title TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX conversations_user ON conversations(user_id, updated_at);
        CREATE TABLE messages (
            id TEXT PRIMARY KEY,
            conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
            content TEXT NOT NULL,
            bot TEXT,
            status TEXT NOT NULL DEFAULT 'complete',
            reply_to TEXT,
            created_at REAL NOT NULL
        );
        CREATE INDEX messages_conversation ON messages(conversation_id, id);
        CREATE TABLE thoughts (
            id TEXT PRIMARY KEY,
            conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            turn_id TEXT,
            bot TEXT NOT NULL,
            text TEXT NOT NULL,
            status TEXT NOT NULL,
            started_at REAL NOT NULL,
            ended_at REAL
        );
        CREATE INDEX thoughts_conversation ON thoughts(conversation_id, id);
        CREATE TABLE injections (
            id TEXT PRIMARY KEY,
            conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            turn_id TEXT,
            bot TEXT NOT NULL,
            text TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            mode TEXT NOT NULL DEFAULT 'next_reply',
            consumed_by TEXT,
            created_at REAL NOT NULL
        );
        CREATE INDEX injections_conversation ON injections(conversation_id, id);
        CREATE TABLE events (
            conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            bot TEXT NOT NULL DEFAULT '',
            ref TEXT,
            payload TEXT NOT NULL,
            ts REAL NOT NULL,
            PRIMARY KEY (conversation_id, seq)
        ) WITHOUT ROWID;
        """
    )


@migration
def m006_rooms_and_instructions(conn: Any) -> None:
    run_script(
        conn,
        """
        CREATE TABLE rooms (
            conversation_id TEXT PRIMARY KEY REFERENCES conversations(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE TABLE room_members (
            conversation_id TEXT NOT NULL REFERENCES rooms(conversation_id) ON DELETE CASCADE,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            PRIMARY KEY (conversation_id, user_id)
        ) WITHOUT ROWID;
        CREATE INDEX room_members_user ON room_members(user_id);
        CREATE TABLE instruction_versions (
            conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            text TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            source TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            PRIMARY KEY (conversation_id, version)
        ) WITHOUT ROWID;
        """
    )


@migration
def m008_authors_and_turns(conn: Any) -> None:
    """Who wrote each user message (rooms hold several people), and which turn each event belongs to.

    A fact belongs to the person who said it, and deleting a message deletes
    what was derived from it: both need these links.
    """
    run_script(
        conn,
        """
        ALTER TABLE messages ADD COLUMN user_id TEXT;
        UPDATE messages SET user_id = (SELECT c.user_id FROM conversations c WHERE c.id = messages.conversation_id)
            WHERE role = 'user' AND conversation_id NOT IN (SELECT conversation_id FROM rooms);
        UPDATE messages SET user_id = (SELECT u.id FROM users u WHERE u.name = messages.bot)
            WHERE role = 'user' AND conversation_id IN (SELECT conversation_id FROM rooms);
        CREATE INDEX messages_author ON messages(user_id);
        CREATE INDEX messages_reply_to ON messages(reply_to);
        ALTER TABLE events ADD COLUMN turn TEXT;
        UPDATE events SET turn = json_extract(payload, '$.turn');
        CREATE INDEX events_turn ON events(conversation_id, turn);
        CREATE INDEX thoughts_turn ON thoughts(turn_id);
        CREATE INDEX injections_turn ON injections(turn_id);
        """,
    )


@migration
def m030_learn_feedback(conn: Any) -> None:
    """A person's verdict on a reply: good, bad, and/or the text they wanted instead (issue 14).

    One row per (reply, person). Deleting the reply deletes the verdict: forget means forget,
    and a dataset is rebuilt from these rows every time.
    """
    run_script(
        conn,
        """
        CREATE TABLE learn_feedback (
            message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            rating TEXT CHECK (rating IN ('good', 'bad')),
            correction TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (message_id, user_id)
        ) WITHOUT ROWID;
        CREATE INDEX learn_feedback_user ON learn_feedback(user_id, updated_at);
        """,
    )
