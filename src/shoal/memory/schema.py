"""Schema of the memory store (registered with the shared migration list)."""

from __future__ import annotations

from typing import Any

from shoal.store.migrations import migration, run_script


@migration
def m002_memories(conn: Any) -> None:
    run_script(
        conn,
        """
        CREATE TABLE memories (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            bot TEXT,
            conversation_id TEXT,
            kind TEXT NOT NULL CHECK (kind IN ('raw', 'fact', 'summary', 'observation')),
            text TEXT NOT NULL,
            attribute TEXT,
            value TEXT,
            sources TEXT NOT NULL DEFAULT '[]',
            method TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            superseded_by TEXT,
            content_hash TEXT NOT NULL
        );
        CREATE INDEX memories_scope ON memories(user_id, kind, superseded_by);
        CREATE INDEX memories_attribute ON memories(user_id, attribute);
        """
    )


@migration
def m004_memory_search(conn: Any) -> None:
    """Full-text and vector indexes beside the memories table, and pending facts.

    A memory has several vectors (channels): its text, its text with the
    message before it, with the message after it (added when that arrives),
    and one per sentence of a longer text. ``memory_vectors`` holds them as
    float32 for exact scoring; ``memory_vec`` holds the same rows
    binary-quantised, partitioned by user, for a fast first pass.
    """
    from shoal.store.sqlite import vec_available

    run_script(
        conn,
        """
        ALTER TABLE memories ADD COLUMN supersedes TEXT;
        CREATE VIRTUAL TABLE memory_fts USING fts5(
            text, context, memory_id UNINDEXED, user_id UNINDEXED, tokenize = 'porter unicode61'
        );
        INSERT INTO memory_fts (text, context, memory_id, user_id) SELECT text, '', id, user_id FROM memories;
        CREATE TABLE memory_vectors (
            id INTEGER PRIMARY KEY,
            memory INTEGER NOT NULL,          -- memories.rowid
            channel TEXT NOT NULL,            -- text | before | after | sentence
            with_memory INTEGER,              -- the neighbour whose text is mixed in (before/after)
            vec BLOB NOT NULL
        );
        CREATE INDEX memory_vectors_memory ON memory_vectors(memory);
        CREATE INDEX memory_vectors_with ON memory_vectors(with_memory);
        -- facts waiting for the user's consent (memory.consent = "ask")
        CREATE TABLE memory_pending (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            conversation_id TEXT,
            attribute TEXT NOT NULL,
            value TEXT NOT NULL,
            text TEXT NOT NULL,
            sources TEXT NOT NULL,
            method TEXT NOT NULL,
            bot TEXT,
            created_at REAL NOT NULL
        );
        """,
    )
    if vec_available():
        conn.execute("CREATE VIRTUAL TABLE memory_vec USING vec0(user_id text partition key, emb bit[384])")


@migration
def m005_crush(conn: Any) -> None:
    """A conversation's crushed middle: its summary and the last message it covers."""
    run_script(
        conn,
        """
        ALTER TABLE conversations ADD COLUMN summary TEXT NOT NULL DEFAULT '';
        ALTER TABLE conversations ADD COLUMN summarized_until TEXT;
        """,
    )


@migration
def m007_memory_index(conn: Any) -> None:
    """Per-user counters of added/removed vectors (the in-process binary index follows them), and
    an index for the duplicate check on every write (it scanned all of a user's memories)."""
    run_script(
        conn,
        """
        CREATE TABLE memory_index_state (
            user_id TEXT PRIMARY KEY,
            added INTEGER NOT NULL DEFAULT 0,
            removed INTEGER NOT NULL DEFAULT 0
        );
        INSERT INTO memory_index_state (user_id, added)
            SELECT m.user_id, count(*) FROM memory_vectors v JOIN memories m ON m.rowid = v.memory GROUP BY m.user_id;
        CREATE INDEX memories_hash ON memories(user_id, content_hash);
        """,
    )


@migration
def m009_memory_sources(conn: Any) -> None:
    """Which messages each memory came from, indexed both ways.

    Forgetting a message must find every memory made from it without reading
    every memory's JSON ``sources`` (at 100k memories that is seconds).
    """
    run_script(
        conn,
        """
        CREATE TABLE memory_sources (
            message_id TEXT NOT NULL,
            memory_id TEXT NOT NULL,
            PRIMARY KEY (message_id, memory_id)
        ) WITHOUT ROWID;
        CREATE INDEX memory_sources_memory ON memory_sources(memory_id);
        INSERT OR IGNORE INTO memory_sources (message_id, memory_id)
            SELECT j.value, m.id FROM memories m, json_each(m.sources) j;
        CREATE INDEX memories_conversation ON memories(conversation_id);
        -- a memory's keyword row has the memory's rowid: found and deleted without scanning the index
        CREATE TEMP TABLE fts_copy AS
            SELECT m.rowid AS mrow, f.text, f.context, f.memory_id, f.user_id
            FROM memory_fts f JOIN memories m ON m.id = f.memory_id;
        DELETE FROM memory_fts;
        INSERT INTO memory_fts (rowid, text, context, memory_id, user_id)
            SELECT mrow, text, context, memory_id, user_id FROM fts_copy;
        DROP TABLE fts_copy;
        """,
    )


@migration
def m010_pending_notes(conn: Any) -> None:
    """Raw notes wait for consent too (``memory.consent = "ask"``): a "no" must leave nothing recallable."""
    conn.execute("ALTER TABLE memory_pending ADD COLUMN kind TEXT NOT NULL DEFAULT 'fact'")


@migration
def m011_fact_attributes(conn: Any) -> None:
    """One memory, several attributes: "I'm Sarah, a nurse in Bristol" is one clause, so one memory
    (name, job and location), not three cards with the same text. ``facts`` lists every
    (attribute, value) of a fact memory, each with its own ``superseded_by``; ``attribute``/``value``
    keep the first for indexes and older readers."""
    run_script(
        conn,
        """
        ALTER TABLE memories ADD COLUMN facts TEXT;
        UPDATE memories SET facts = json_array(json_object('attribute', attribute, 'value', value, 'superseded_by', superseded_by))
            WHERE kind = 'fact' AND attribute IS NOT NULL;
        """,
    )


@migration
def m012_memory_speakers(conn: Any) -> None:
    """Who said what a memory holds, in a transcript of several speakers (an imported chat, a
    benchmark's dialogue): a question that names one of them ("What did Caroline research?")
    searches their words. NULL is the person's own (every message of a shoal chat). And memories
    by time: a question that names a date searches what was said then."""
    run_script(
        conn,
        """
        ALTER TABLE memories ADD COLUMN speaker TEXT;
        CREATE INDEX memories_speaker ON memories(user_id, speaker);
        -- what was said around a date a question names ("in December 2023"), and the years a user's memories span
        CREATE INDEX memories_time ON memories(user_id, created_at);
        """,
    )
