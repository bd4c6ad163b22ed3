"""Users, conversations, messages, thoughts, injections and the event log."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Iterable

from shoal.errors import NotFound
from shoal.store.db import Conn, Database, now
from shoal.store.ids import new_id


@dataclass(frozen=True, slots=True)
class User:
    id: str
    name: str
    is_admin: bool
    created_at: float


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    user_id: str
    title: str
    created_at: float
    updated_at: float
    #: the room's name when the conversation is a room (several people, personas answer)
    room: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    conversation_id: str
    role: str
    content: str
    bot: str | None
    status: str
    reply_to: str | None
    created_at: float
    #: who wrote it (user messages; in a room, one of several people)
    user_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "conversation": self.conversation_id,
            "role": self.role,
            "content": self.content,
            "bot": self.bot,
            "status": self.status,
            "reply_to": self.reply_to,
            "created_at": self.created_at,
            "author": self.user_id,
        }


def _user(r: Any) -> User:
    return User(r["id"], r["name"], bool(r["is_admin"]), r["created_at"])


def _conv(r: Any) -> Conversation:
    return Conversation(r["id"], r["user_id"], r["title"], r["created_at"], r["updated_at"], r["room"])


#: a conversation row with its room's name (NULL when it is not a room)
_CONV_SELECT = "SELECT c.*, r.name AS room FROM conversations c LEFT JOIN rooms r ON r.conversation_id = c.id"


def _msg(r: Any) -> Message:
    return Message(
        r["id"], r["conversation_id"], r["role"], r["content"], r["bot"], r["status"], r["reply_to"], r["created_at"],
        r["user_id"],
    )


class ConversationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- users ------------------------------------------------------------
    async def ensure_user(self, name: str, *, is_admin: bool = False) -> User:
        def fn(c: Conn) -> User:
            row = c.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
            if row:
                return _user(row)
            uid = new_id()
            c.execute(
                "INSERT INTO users (id, name, is_admin, created_at) VALUES (?, ?, ?, ?)",
                (uid, name, int(is_admin), now()),
            )
            return _user(c.execute("SELECT * FROM users WHERE id = ?", (uid,)).fetchone())

        return await self.db.write(fn)

    async def get_user(self, user_id: str) -> User:
        row = await self.db.read(lambda c: c.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone())
        if not row:
            raise NotFound(f"no user with id '{user_id}'")
        return _user(row)

    # -- conversations ----------------------------------------------------
    async def create_conversation(self, user_id: str, title: str = "") -> Conversation:
        cid = new_id()
        t = now()

        def fn(c: Conn) -> None:
            c.execute(
                "INSERT INTO conversations (id, user_id, title, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                (cid, user_id, title, t, t),
            )

        await self.db.write(fn)
        return Conversation(cid, user_id, title, t, t)

    async def get_conversation(self, conversation_id: str, *, user_id: str | None = None) -> Conversation:
        def fn(c: Conn) -> tuple[Any, bool]:
            row = c.execute(f"{_CONV_SELECT} WHERE c.id = ?", (conversation_id,)).fetchone()
            member = user_id is not None and c.execute(
                "SELECT 1 FROM room_members WHERE conversation_id = ? AND user_id = ?", (conversation_id, user_id)
            ).fetchone() is not None
            return row, member

        row, member = await self.db.read(fn)
        # someone else's conversation is indistinguishable from a missing one;
        # every member of a room may use it
        if not row or (user_id is not None and row["user_id"] != user_id and not member):
            raise NotFound(
                f"no conversation '{conversation_id}'",
                hint="`shoal chat` without --conversation starts a new one",
            )
        return _conv(row)

    async def list_conversations(self, user_id: str, *, limit: int = 100) -> list[Conversation]:
        rows = await self.db.read(
            lambda c: c.execute(
                f"{_CONV_SELECT} WHERE c.user_id = ?"
                " OR c.id IN (SELECT conversation_id FROM room_members WHERE user_id = ?)"
                " ORDER BY c.updated_at DESC LIMIT ?",
                (user_id, user_id, limit),
            ).fetchall()
        )
        return [_conv(r) for r in rows]

    # -- rooms ----------------------------------------------------------------
    async def create_room(self, name: str, owner_id: str, members: Iterable[str]) -> Conversation:
        """A room is a conversation that several people share (``members`` include the owner)."""
        conv = await self.create_conversation(owner_id, title=f"room {name}")
        people = list(dict.fromkeys([owner_id, *members]))

        def fn(c: Conn) -> None:
            c.execute("INSERT INTO rooms (conversation_id, name, created_at) VALUES (?, ?, ?)", (conv.id, name, now()))
            c.executemany(
                "INSERT INTO room_members (conversation_id, user_id) VALUES (?, ?)", [(conv.id, u) for u in people]
            )

        await self.db.write(fn)
        return replace(conv, room=name)

    async def room_members(self, conversation_id: str) -> list[User]:
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT u.* FROM users u JOIN room_members m ON m.user_id = u.id WHERE m.conversation_id = ?"
                " ORDER BY u.name",
                (conversation_id,),
            ).fetchall()
        )
        return [_user(r) for r in rows]

    async def bot_message_times(self, conversation_id: str | None, bot: str, since: float) -> list[float]:
        """When ``bot`` wrote its messages since ``since`` (all conversations when None)."""

        def fn(c: Conn) -> list[Any]:
            if conversation_id is None:
                return c.execute(
                    "SELECT created_at FROM messages WHERE role = 'assistant' AND bot = ? AND created_at >= ?"
                    " ORDER BY created_at",
                    (bot, since),
                ).fetchall()
            return c.execute(
                "SELECT created_at FROM messages WHERE conversation_id = ? AND role = 'assistant' AND bot = ?"
                " AND created_at >= ? ORDER BY created_at",
                (conversation_id, bot, since),
            ).fetchall()

        return [r[0] for r in await self.db.read(fn)]

    # -- the evolving instruction ----------------------------------------------
    async def instruction_versions(self, conversation_id: str) -> list[dict[str, Any]]:
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT version, text, reason, source, created_at FROM instruction_versions"
                " WHERE conversation_id = ? ORDER BY version",
                (conversation_id,),
            ).fetchall()
        )
        return [dict(r) for r in rows]

    async def instruction(self, conversation_id: str) -> tuple[int, str]:
        """(version, text) of the conversation's current instruction addendum; (0, '') when none."""
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT version, text FROM instruction_versions WHERE conversation_id = ? ORDER BY version DESC LIMIT 1",
                (conversation_id,),
            ).fetchone()
        )
        return (row["version"], row["text"]) if row else (0, "")

    async def add_instruction_version(self, conversation_id: str, text: str, *, reason: str, source: str) -> int:
        def fn(c: Conn) -> int:
            row = c.execute(
                "SELECT COALESCE(MAX(version), 0) FROM instruction_versions WHERE conversation_id = ?", (conversation_id,)
            ).fetchone()
            version = int(row[0]) + 1
            c.execute(
                "INSERT INTO instruction_versions (conversation_id, version, text, reason, source, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (conversation_id, version, text, reason, source, now()),
            )
            return version

        return await self.db.write(fn)

    async def summary(self, conversation_id: str) -> str:
        """The running summary of the conversation's crushed middle ('' when none)."""
        row = await self.db.read(
            lambda c: c.execute("SELECT summary FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        )
        return row["summary"] if row else ""

    async def scrolled_out(self, conversation_id: str, window: int) -> tuple[str, list[dict[str, Any]]]:
        """(the running summary, the messages not yet summarised that are older than the last ``window``)."""

        def fn(c: Conn) -> tuple[str, list[dict[str, Any]]]:
            row = c.execute("SELECT summary, summarized_until FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
            if row is None:
                return "", []
            older = c.execute(
                "SELECT id, role, content FROM messages WHERE conversation_id = ? AND id > ? AND id NOT IN"
                " (SELECT id FROM messages WHERE conversation_id = ? ORDER BY id DESC LIMIT ?) ORDER BY id",
                (conversation_id, row["summarized_until"] or "", conversation_id, window),
            ).fetchall()
            return row["summary"], [dict(r) for r in older]

        return await self.db.read(fn)

    async def set_summary(self, conversation_id: str, summary: str, *, until: str) -> None:
        await self.db.write(
            lambda c: c.execute(
                "UPDATE conversations SET summary = ?, summarized_until = ? WHERE id = ?", (summary, until, conversation_id)
            )
        )

    # -- messages ---------------------------------------------------------
    async def add_message(
        self,
        conversation_id: str,
        role: str,
        content: str,
        *,
        bot: str | None = None,
        status: str = "complete",
        reply_to: str | None = None,
        message_id: str | None = None,
        user_id: str | None = None,
    ) -> Message:
        """Store a message; ``user_id`` is its author (user messages)."""
        mid = message_id or new_id()
        t = now()

        def fn(c: Conn) -> None:
            c.execute(
                "INSERT INTO messages (id, conversation_id, role, content, bot, status, reply_to, created_at, user_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (mid, conversation_id, role, content, bot, status, reply_to, t, user_id),
            )
            title = content[:60] if role == "user" else None
            c.execute(
                "UPDATE conversations SET updated_at = ?, title = CASE WHEN title = '' AND ? IS NOT NULL"
                " THEN ? ELSE title END WHERE id = ?",
                (t, title, title, conversation_id),
            )

        await self.db.write(fn)
        return Message(mid, conversation_id, role, content, bot, status, reply_to, t, user_id)

    async def history(self, conversation_id: str, *, limit: int, before: str | None = None) -> list[Message]:
        """The last ``limit`` messages, oldest first (ids sort by time)."""
        if limit <= 0:
            return []

        def fn(c: Conn) -> list[Any]:
            if before:
                return c.execute(
                    "SELECT * FROM messages WHERE conversation_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
                    (conversation_id, before, limit),
                ).fetchall()
            return c.execute(
                "SELECT * FROM messages WHERE conversation_id = ? ORDER BY id DESC LIMIT ?",
                (conversation_id, limit),
            ).fetchall()

        rows = await self.db.read(fn)
        return [_msg(r) for r in reversed(rows)]

    async def get_message(self, message_id: str) -> Message:
        row = await self.db.read(lambda c: c.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone())
        if not row:
            raise NotFound(f"no message '{message_id}'")
        return _msg(row)

    # -- thoughts ---------------------------------------------------------
    async def save_thought(
        self,
        thought_id: str,
        conversation_id: str,
        *,
        bot: str,
        turn_id: str | None,
        text: str,
        status: str,
        started_at: float,
        ended_at: float | None = None,
    ) -> None:
        def fn(c: Conn) -> None:
            c.execute(
                "INSERT INTO thoughts (id, conversation_id, turn_id, bot, text, status, started_at, ended_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET text = excluded.text,"
                " status = excluded.status, ended_at = excluded.ended_at",
                (thought_id, conversation_id, turn_id, bot, text, status, started_at, ended_at),
            )

        await self.db.write(fn)

    async def thoughts(self, conversation_id: str, *, turn_id: str | None = None, bot: str | None = None) -> list[dict[str, Any]]:
        """The conversation's thoughts, oldest first; of one turn and/or one bot when given."""

        def fn(c: Conn) -> list[Any]:
            sql, args = "SELECT * FROM thoughts WHERE conversation_id = ?", [conversation_id]
            if turn_id:
                sql, args = sql + " AND turn_id = ?", [*args, turn_id]
            if bot:
                sql, args = sql + " AND bot = ?", [*args, bot]
            return c.execute(sql + " ORDER BY id", args).fetchall()

        return [dict(r) for r in await self.db.read(fn)]

    # -- injections -------------------------------------------------------
    async def add_injection(
        self, injection_id: str, conversation_id: str, *, bot: str, turn_id: str | None, text: str, reason: str, mode: str
    ) -> None:
        await self.db.write(
            lambda c: c.execute(
                "INSERT INTO injections (id, conversation_id, turn_id, bot, text, reason, mode, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (injection_id, conversation_id, turn_id, bot, text, reason, mode, now()),
            )
        )

    async def pending_injections(self, conversation_id: str) -> list[dict[str, Any]]:
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT * FROM injections WHERE conversation_id = ? AND consumed_by IS NULL ORDER BY id",
                (conversation_id,),
            ).fetchall()
        )
        return [dict(r) for r in rows]

    async def consume_injections(self, ids: Iterable[str], message_id: str) -> None:
        ids = list(ids)
        if not ids:
            return
        await self.db.write(
            lambda c: c.executemany(
                "UPDATE injections SET consumed_by = ? WHERE id = ?", [(message_id, i) for i in ids]
            )
        )

    async def injections(self, conversation_id: str, *, turn_id: str | None = None) -> list[dict[str, Any]]:
        def fn(c: Conn) -> list[Any]:
            if turn_id:
                return c.execute(
                    "SELECT * FROM injections WHERE conversation_id = ? AND turn_id = ? ORDER BY id",
                    (conversation_id, turn_id),
                ).fetchall()
            return c.execute(
                "SELECT * FROM injections WHERE conversation_id = ? ORDER BY id", (conversation_id,)
            ).fetchall()

        return [dict(r) for r in await self.db.read(fn)]

    # -- event log ----------------------------------------------------------
    async def max_seq(self, conversation_id: str) -> int:
        row = await self.db.read(
            lambda c: c.execute("SELECT MAX(seq) FROM events WHERE conversation_id = ?", (conversation_id,)).fetchone()
        )
        return int(row[0] or 0)

    async def max_seqs(self, conversation_ids: list[str]) -> dict[str, int]:
        """``max_seq`` of several conversations in one read (0 for one without events)."""
        out = dict.fromkeys(conversation_ids, 0)
        for start in range(0, len(conversation_ids), 500):
            part = conversation_ids[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = await self.db.read(
                lambda c, part=part, marks=marks: c.execute(
                    f"SELECT conversation_id, MAX(seq) FROM events WHERE conversation_id IN ({marks}) GROUP BY conversation_id",
                    part,
                ).fetchall()
            )
            out.update({r[0]: int(r[1] or 0) for r in rows})
        return out

    async def append_events(self, rows: list[tuple[str, int, str, str, str | None, str, float, str | None]]) -> None:
        """Rows are (conversation, seq, kind, bot, ref, payload_json, ts, turn)."""
        if not rows:
            return

        # the whole batch goes in as one statement over a JSON array: executemany would step
        # (and hand the GIL back and forth with the busy event loop) once per row
        batch = json.dumps(rows)
        ended = json.dumps([(r[0], r[4]) for r in rows if r[2] in ("reply.end", "thought.end") and r[4]])

        def fn(c: Conn) -> None:
            # events of a conversation deleted meanwhile (a reply still finishing) are not kept
            c.execute(
                "INSERT OR IGNORE INTO events (conversation_id, seq, kind, bot, ref, payload, ts, turn)"
                " SELECT e->>0, e->>1, e->>2, e->>3, e->>4, e->>5, e->>6, e->>7"
                " FROM (SELECT value AS e FROM json_each(?)) WHERE EXISTS (SELECT 1 FROM conversations WHERE id = e->>0)",
                (batch,),
            )
            # a finished stream's deltas are redundant with its end event
            if ended != "[]":
                c.execute(
                    "DELETE FROM events WHERE kind IN ('reply.delta', 'thought.delta')"
                    " AND (conversation_id, ref) IN (SELECT value->>0, value->>1 FROM json_each(?))",
                    (ended,),
                )

        # every open websocket waits for these: ahead of the other waiting writes
        await self.db.write(fn, urgent=True)

    async def events_since(self, conversation_id: str, seq: int, *, limit: int = 10_000) -> list[dict[str, Any]]:
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT payload FROM events WHERE conversation_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (conversation_id, seq, limit),
            ).fetchall()
        )
        return [json.loads(r[0]) for r in rows]
