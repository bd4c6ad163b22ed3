"""The hub's tables in shoal.db (registered with the shared migration list).

``edge_entries`` holds every journal entry of every node, keyed by
``(node, seq)``: the key is the dedup that holds beyond any time window — a
batch re-sent after months is ignored row by row. Readings are ~30 bytes a
row; observations and facts are also in ``edge_notes`` (with a full-text
index) for the Nodes view and recall. ``edge_ranges`` are the merged ranges
of seqs held per node (usually one), from which ``contig`` and the holes the
hub pulls are computed.
"""

from __future__ import annotations

from typing import Any

from shoal.store.migrations import migration, run_script


@migration
def m020_edge_hub(conn: Any) -> None:
    run_script(
        conn,
        """
        CREATE TABLE edge_nodes (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            uid TEXT NOT NULL,               -- the node's journal identity: a reset journal is another uid
            site TEXT NOT NULL DEFAULT '',
            location TEXT NOT NULL DEFAULT '',
            contig INTEGER NOT NULL DEFAULT 0,   -- every seq up to here is held (or was pruned on the node)
            head INTEGER NOT NULL DEFAULT 0,     -- the node's head when it last said hello
            first_seen REAL NOT NULL,
            last_seen REAL,                      -- last hello
            last_batch REAL,                     -- last batch committed
            offset_ms INTEGER,                   -- hub clock minus node clock at the last hello
            received INTEGER NOT NULL DEFAULT 0,
            duplicates INTEGER NOT NULL DEFAULT 0,
            conflicts INTEGER NOT NULL DEFAULT 0,
            rejected INTEGER NOT NULL DEFAULT 0,
            error TEXT
        );
        CREATE TABLE edge_entries (
            node INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            hlc INTEGER NOT NULL,
            kind INTEGER NOT NULL,
            sensor INTEGER,
            value REAL,
            wall INTEGER,
            body TEXT,
            PRIMARY KEY (node, seq)
        ) WITHOUT ROWID;
        CREATE TABLE edge_ranges (
            node INTEGER NOT NULL, first INTEGER NOT NULL, last INTEGER NOT NULL, PRIMARY KEY (node, first)
        ) WITHOUT ROWID;
        -- ranges the node removed (its retention) before the hub had them: accounted for, not missing
        CREATE TABLE edge_pruned (
            node INTEGER NOT NULL, first INTEGER NOT NULL, last INTEGER NOT NULL, at REAL NOT NULL,
            PRIMARY KEY (node, first)
        ) WITHOUT ROWID;
        -- per node, sensor and hour: plots over weeks without scanning millions of rows
        CREATE TABLE edge_hourly (
            node INTEGER NOT NULL, sensor INTEGER NOT NULL, t INTEGER NOT NULL,
            n INTEGER NOT NULL, sum REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL,
            PRIMARY KEY (node, sensor, t)
        ) WITHOUT ROWID;
        CREATE TABLE edge_sensors (
            node INTEGER NOT NULL, id INTEGER NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,
            unit TEXT NOT NULL DEFAULT '', label TEXT NOT NULL DEFAULT '', binary INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (node, id)
        ) WITHOUT ROWID;
        CREATE TABLE edge_clock (
            node INTEGER NOT NULL, from_seq INTEGER NOT NULL, offset_ms INTEGER NOT NULL, at REAL NOT NULL,
            PRIMARY KEY (node, from_seq)
        ) WITHOUT ROWID;
        CREATE TABLE edge_notes (
            node INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('observation', 'fact', 'clock', 'event')),
            hlc INTEGER NOT NULL,
            t_hub INTEGER NOT NULL,          -- ms on the hub's clock (node time + offset)
            sensor TEXT,
            text TEXT NOT NULL,
            confidence REAL,
            key TEXT,
            superseded_by INTEGER,
            body TEXT NOT NULL,
            PRIMARY KEY (node, seq)
        ) WITHOUT ROWID;
        CREATE INDEX edge_notes_time ON edge_notes(node, t_hub);
        CREATE VIRTUAL TABLE edge_notes_fts USING fts5(
            text, place, node UNINDEXED, seq UNINDEXED, tokenize = 'porter unicode61'
        );
        CREATE TABLE edge_grants (
            node TEXT NOT NULL,              -- a node name, or site:NAME
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            granted_by TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            PRIMARY KEY (node, user_id)
        ) WITHOUT ROWID;
        CREATE INDEX edge_grants_user ON edge_grants(user_id);
        """,
    )
