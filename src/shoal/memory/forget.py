"""Forgetting: a memory, a message, a conversation or a person — and everything derived from it.

What counts as *derived* (docs/memory.md, "Forgetting"):

* from a memory: its vectors and keyword rows (its own, and the context its
  text gave its neighbours), the raw note of the message it came from, the
  journal events that carried it (``memory.write``, the ``recalled`` lists of
  ``reply.start`` / ``memory.done``), the injections that quoted it, the
  summaries built from its message, the line of the evolving instruction
  built from it (a new version without it; older versions redacted), and the
  copies of its words in what was made from its message — the reply to it,
  the thoughts about it, that turn's events;
* from a message: all of the above for every memory it gave, plus the reply
  to it, the thoughts, injections and events of its turn;
* from a conversation: every message in it; from a person: everything they
  own or wrote, in every table.

The source message of a forgotten memory stays in its conversation (the
caller is told which one, so the person can delete it too). Every operation
ends with an FTS merge and a WAL checkpoint: with ``secure_delete`` on, the
forgotten words are then gone from the database file's bytes and its WAL.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from shoal.errors import NotFound, PermissionDenied
from shoal.memory.store import STOPWORDS
from shoal.store.db import Conn, Database, now

if TYPE_CHECKING:
    from shoal.memory.store import MemoryStore

log = logging.getLogger(__name__)

REDACTED = "[forgotten]"

#: words that name a kind of thing rather than the thing ("my dog Rex": Rex is what to forget)
CATEGORY_WORDS = frozenset(
    "dog dogs cat cats puppy kitten pet pets parrot rabbit hamster horse fish bird wife husband partner son daughter "
    "mother mum mom father dad brother sister child children kid kids friend job work city town country place "
    "live lives living years year old".split()
)


@dataclass
class Erased:
    """What an erasure removed (one line per kind of row) and what it left on purpose."""

    deleted: list[str] = field(default_factory=list)
    #: messages a forgotten memory came from: they stay in their conversations
    source_messages: list[dict[str, Any]] = field(default_factory=list)
    #: (conversation, version) of each instruction rewritten without a forgotten line
    instructions: list[tuple[str, int, str]] = field(default_factory=list)
    #: words scrubbed from derived copies (bots holding them in memory scrub them too)
    terms: list[str] = field(default_factory=list)
    #: conversations whose messages were deleted, and conversations deleted whole
    conversations: set[str] = field(default_factory=set)
    deleted_conversations: set[str] = field(default_factory=set)

    def count(self, what: str, n: int) -> None:
        if n:
            self.deleted.append(f"{what}: {n}")


def scrub_terms(text: str, *values: str | None) -> list[str]:
    """The strings to remove from derived copies of a memory: its clause, its values, the values' telling words."""
    terms = {text.strip()}
    for value in values:
        if not value:
            continue
        terms.add(value.strip())
        for w in re.findall(r"[\w'\-]+", value):
            if len(w) > 1 and w.lower() not in STOPWORDS and w.lower() not in CATEGORY_WORDS:
                terms.add(w)
    return sorted((t for t in terms if t), key=len, reverse=True)


def _values(row: Any) -> list[str]:
    """Every value a memory row states (a fact may state several)."""
    facts = json.loads(row["facts"]) if row["facts"] else []
    return [f["value"] for f in facts] or ([row["value"]] if row["value"] else [])


def _pairs(row: Any) -> list[tuple[str, str]]:
    facts = json.loads(row["facts"]) if row["facts"] else []
    return [(f["attribute"], f["value"]) for f in facts] or (
        [(row["attribute"], row["value"])] if row["attribute"] and row["value"] else []
    )


def scrub_pattern(terms: Iterable[str]) -> re.Pattern[str] | None:
    terms = [t for t in terms if t]
    if not terms:
        return None
    parts = []
    for t in sorted(terms, key=len, reverse=True):
        esc = re.escape(t)
        # whole words only: forgetting "Ann" must not touch "Anna" or "annual"
        parts.append(rf"(?<![\w]){esc}(?![\w])")
    return re.compile("|".join(parts), re.I)


def scrub(text: str, pattern: re.Pattern[str] | None) -> str:
    return text if pattern is None or not text else pattern.sub(REDACTED, text)


def _like(term: str) -> str:
    """A LIKE pattern matching ``term`` anywhere, its wildcards escaped (ESCAPE '\\')."""
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _scrub_json(value: Any, pattern: re.Pattern[str] | None, drop_ids: set[str]) -> Any:
    """A JSON value with strings scrubbed and memory items of ``drop_ids`` taken out of lists."""
    if isinstance(value, str):
        return scrub(value, pattern)
    if isinstance(value, list):
        return [
            _scrub_json(v, pattern, drop_ids)
            for v in value
            if not (isinstance(v, dict) and v.get("id") in drop_ids and "text" in v)
        ]
    if isinstance(value, dict):
        return {k: _scrub_json(v, pattern, drop_ids) for k, v in value.items()}
    return value


class Eraser:
    """Deletes a person's data and what was derived from it, in one transaction per request."""

    def __init__(self, db: Database, memories: "MemoryStore | None" = None, *, summary_chars: int = 800) -> None:
        self.db = db
        self.memories = memories
        self.summary_chars = summary_chars

    # -- the four requests ---------------------------------------------------------------
    async def forget_memory(self, memory_id: str, *, user_id: str) -> Erased:
        """Forget one of ``user_id``'s memories (someone else's is a NotFound)."""
        out = Erased()

        def fn(c: Conn) -> Erased:
            row = c.execute("SELECT * FROM memories WHERE id = ?", (memory_id,)).fetchone()
            if row is None or row["user_id"] != user_id:
                raise NotFound(f"no memory '{memory_id}'", hint="`shoal memory list` shows your memories")
            self._forget(c, [row], out)
            return out

        await self.db.write(fn)
        await self._finish(out)
        return out

    async def drop_notes_of(self, message_id: str, *, user_id: str) -> Erased:
        """Drop ``user_id``'s raw notes of one message (its verbatim copies in memory) and nothing else.

        The message itself stays, unchanged. For a reply the person asked to have written again
        (issue 14): shoal does not stand by those words, so recall must not bring them back.
        """
        out = Erased()

        def fn(c: Conn) -> Erased:
            for row in _memories_from(c, [message_id]):
                if row["kind"] == "raw" and row["user_id"] == user_id:
                    self._drop(c, row, out)
            return out

        await self.db.write(fn)
        if out.deleted:
            await self._finish(out)
        return out

    async def delete_message(self, message_id: str, *, user_id: str, is_admin: bool = False) -> Erased:
        """Delete a message, the reply to it, and everything derived from them."""
        out = Erased()

        def fn(c: Conn) -> Erased:
            msg = c.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
            if msg is None or not _may_see(c, msg["conversation_id"], user_id):
                raise NotFound(f"no message '{message_id}'", hint="open the conversation to see its messages")
            if not (msg["user_id"] == user_id or _may_manage(c, msg["conversation_id"], user_id, is_admin)):
                raise PermissionDenied(
                    "only its author or the conversation's owner may delete this message",
                    hint="ask the owner of this room, or an admin who is a member",
                )
            self._delete_messages(c, [message_id], out)
            return out

        await self.db.write(fn)
        await self._finish(out)
        return out

    async def delete_conversation(self, conversation_id: str, *, user_id: str, is_admin: bool = False) -> Erased:
        """Delete a conversation (room) with every message in it and everything derived from them."""
        out = Erased()

        def fn(c: Conn) -> Erased:
            if not _may_see(c, conversation_id, user_id):
                raise NotFound(f"no conversation '{conversation_id}'", hint="`shoal chat` without --conversation starts a new one")
            if not _may_manage(c, conversation_id, user_id, is_admin):
                raise PermissionDenied(
                    "only the owner of this room (or an admin who is a member) may delete it",
                    hint="leave it instead, or ask its owner",
                )
            self._delete_conversation(c, conversation_id, out)
            return out

        await self.db.write(fn)
        await self._finish(out)
        return out

    async def remove_user(self, user_id: str) -> Erased:
        """Everything of a person, in every table: their conversations, their words in others' rooms, their memories."""
        out = Erased()

        def fn(c: Conn) -> Erased:
            for (cid,) in c.execute("SELECT id FROM conversations WHERE user_id = ?", (user_id,)).fetchall():
                self._delete_conversation(c, cid, out)
            written = [r[0] for r in c.execute("SELECT id FROM messages WHERE user_id = ?", (user_id,)).fetchall()]
            if written:
                self._delete_messages(c, written, out)
            for row in c.execute("SELECT * FROM memories WHERE user_id = ?", (user_id,)).fetchall():
                self._drop(c, row, out)
            out.count("memory_fts rows", c.execute("DELETE FROM memory_fts WHERE user_id = ?", (user_id,)).rowcount)
            if _has_table(c, "memory_vec"):
                out.count("binary vectors", c.execute("DELETE FROM memory_vec WHERE user_id = ?", (user_id,)).rowcount)
            c.execute("DELETE FROM memory_index_state WHERE user_id = ?", (user_id,))
            out.count("facts waiting for consent", c.execute("DELETE FROM memory_pending WHERE user_id = ?", (user_id,)).rowcount)
            c.execute("DELETE FROM room_members WHERE user_id = ?", (user_id,))
            out.count("users", c.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount)  # sessions, tokens cascade
            return out

        await self.db.write(fn)
        await self._finish(out)
        return out

    async def decline(self, conversation_id: str, pending_ids: list[str]) -> None:
        """The person said no: what the question showed of those facts leaves the journal too."""
        ids = set(pending_ids)

        def fn(c: Conn) -> None:
            for _cid, seq, _kind, payload in _events_of_kinds(c, [conversation_id], ("memory.proposed",)):
                data = json.loads(payload)
                shown = data.get("pending", [])
                if not any(p.get("id") in ids for p in shown):
                    continue
                data["pending"] = [
                    {**p, "value": "", "text": ""} if p.get("id") in ids else p for p in shown
                ]
                c.execute(
                    "UPDATE events SET payload = ? WHERE conversation_id = ? AND seq = ?",
                    (json.dumps(data, ensure_ascii=False), conversation_id, seq),
                )

        await self.db.write(fn)

    async def _finish(self, out: Erased) -> None:
        """Merge the FTS index (deleted terms leave its old segments) and checkpoint the WAL."""

        def optimise(c: Conn) -> None:
            c.execute("INSERT INTO memory_fts (memory_fts) VALUES ('optimize')")

        await self.db.write(optimise)
        await self.db.checkpoint()
        if self.memories is not None:
            self.memories.index.forget_cache()
            if self.memories.vectors:
                try:  # scrubbed siblings lost their vectors: embed them again
                    await self.memories.reindex()
                except Exception as exc:  # noqa: BLE001 - keyword search still finds them
                    log.warning("could not re-embed scrubbed memories: %s", exc)

    # -- memories -----------------------------------------------------------------------
    def _forget(
        self, c: Conn, rows: list[Any], out: Erased, *, keep_sources: bool = True, deleting: frozenset[str] = frozenset()
    ) -> None:
        """Forget ``rows`` and what was derived from them; their source messages stay unless in ``deleting``."""
        rows = [r for r in rows if c.execute("SELECT 1 FROM memories WHERE id = ?", (r["id"],)).fetchone()]
        if not rows:
            return
        ids = {r["id"] for r in rows}
        terms = {t for r in rows for t in scrub_terms(r["text"], *_values(r))}
        out.terms = sorted(set(out.terms) | terms, key=len, reverse=True)
        every = scrub_pattern(terms)
        sources: dict[str, set[str]] = {}  # message -> the forgotten memories made from it
        for r in rows:
            for s in json.loads(r["sources"]):
                sources.setdefault(s, set()).add(r["id"])
        convs = _conversations_of(c, sorted({r["user_id"] for r in rows}))

        def pattern_for(memory_ids: Iterable[str]) -> re.Pattern[str] | None:
            wanted = set(memory_ids)
            return scrub_pattern({t for r in rows if r["id"] in wanted for t in scrub_terms(r["text"], *_values(r))})

        # 1. the memories; the raw notes of the same messages (copies of them); other memories
        #    of those messages keep their own words, not the forgotten ones
        for r in rows:
            self._drop(c, r, out)
        for sib in _memories_from(c, list(sources)):
            if sib["id"] in ids:
                continue
            if sib["kind"] == "raw":
                self._drop(c, sib, out)
                continue
            related = {m for s in json.loads(sib["sources"]) for m in sources.get(s, ())}
            text = scrub(sib["text"], pattern_for(related))
            if text != sib["text"]:
                self._rewrite(c, sib, text)
                out.deleted.append(f"{sib['kind']} {sib['id']}: its copy of the forgotten words")
        # 2. replies made from them: the reply to each source, replies that were given a memory
        #    (recalled), or an instruction or a summary that held its words
        replies: dict[str, re.Pattern[str] | None] = {}
        for s, mems in sources.items():
            for (rid,) in c.execute("SELECT id FROM messages WHERE reply_to = ? AND role = 'assistant'", (s,)).fetchall():
                replies[rid] = pattern_for(mems)
        held = self._scrub_conversations(c, convs, rows, every, out)
        for cid, _seq, _kind, payload in _events_of_kinds(c, convs, ("reply.start",)):
            data = json.loads(payload)
            recalled = {m.get("id") for m in data.get("recalled", [])} & ids
            if recalled or (cid, data.get("instruction_version")) in held or scrub(data.get("summary", ""), every) != data.get("summary", ""):
                replies.setdefault(data.get("message_id", ""), every)
        for rid, pattern in replies.items():
            if rid in deleting:
                continue
            msg = c.execute("SELECT content FROM messages WHERE id = ?", (rid,)).fetchone()
            if msg is None:
                continue
            text = scrub(msg["content"], pattern)
            if text != msg["content"]:
                c.execute("UPDATE messages SET content = ? WHERE id = ?", (text, rid))
                out.deleted.append(f"reply {rid}: the forgotten words")
            for note in _memories_from(c, [rid]):
                if note["kind"] == "raw":
                    self._drop(c, note, out)
        # 3. whatever the bots wrote in the person's conversations: the thoughts, notes and replies of any
        #    turn that repeat the words (a later thought may quote the message it saw in the history)
        for cid in convs:
            for table, column, where in (
                ("thoughts", "text", ""), ("injections", "text", ""), ("messages", "content", " AND role = 'assistant'"),
            ):
                for t in _like_any(c, f"SELECT id, {column} FROM {table} WHERE conversation_id = ?{where}", (cid,), column, terms):
                    if t[0] in deleting:
                        continue
                    text = scrub(t[1], every)
                    if text != t[1]:
                        c.execute(f"UPDATE {table} SET {column} = ? WHERE id = ?", (text, t[0]))
                        out.deleted.append(f"{table[:-1]} {t[0]}: the forgotten words")
        # the notes of the bots' replies and the summaries that repeat them are copies too
        for u in sorted({r["user_id"] for r in rows}):
            for m in _like_any(c, "SELECT * FROM memories WHERE user_id = ? AND (method LIKE 'reply%' OR kind = 'summary')", (u,), "text", terms):
                if m["kind"] == "summary":
                    self._rewrite(c, m, scrub(m["text"], every))
                    out.deleted.append(f"summary {m['id']}: the forgotten words")
                else:
                    self._drop(c, m, out)
        for i in ids:
            out.count("injections that quoted it", c.execute("DELETE FROM injections WHERE reason = ?", (f"recalled memory {i}",)).rowcount)
        # 4. the journal: events that carried a memory, and every event copy of its words
        #    (the person's own later messages that say the words again stay, like the messages)
        again = {r[0] for cid in convs for r in c.execute(
            "SELECT id FROM messages WHERE conversation_id = ? AND role = 'user'", (cid,)
        )} - set(sources)
        for cid, seq, kind, payload in _events_of(c, convs, ids | terms):
            if kind == "user.turn" and json.loads(payload).get("message_id") in again:
                continue
            self._scrub_event(c, cid, seq, payload, every, ids, out)
        gone = 0
        for s in sources:
            for p in c.execute("SELECT id FROM memory_pending WHERE sources LIKE ? ESCAPE '\\'", (_like(s),)).fetchall():
                gone += c.execute("DELETE FROM memory_pending WHERE id = ?", (p["id"],)).rowcount
        out.count("facts waiting for consent", gone)
        if keep_sources:
            for s in sources:
                m = c.execute("SELECT id, conversation_id, role FROM messages WHERE id = ?", (s,)).fetchone()
                if m is not None and s not in deleting:
                    out.source_messages.append({"id": m["id"], "conversation": m["conversation_id"], "role": m["role"]})

    def _scrub_conversations(
        self, c: Conn, convs: list[str], rows: list[Any], pattern: re.Pattern[str] | None, out: Erased
    ) -> set[tuple[str, int]]:
        """Running summaries and evolving instructions lose the forgotten words and the lines built from them.

        Returns the (conversation, version) of every instruction that held them: replies built on
        those are copies too.
        """
        fact_lines = {
            f"Remembered about the user ({a}): {v}" for r in rows if r["kind"] == "fact" for a, v in _pairs(r)
        }

        def keep(line: str) -> bool:
            return line.strip() not in fact_lines and scrub(line, pattern) == line

        def redact(text: str) -> str:
            return "\n".join(line if keep(line) else REDACTED for line in text.splitlines())

        held: set[tuple[str, int]] = set()
        for cid in convs:
            s = c.execute("SELECT summary, title FROM conversations WHERE id = ?", (cid,)).fetchone()
            if s and s[0] and scrub(s[0], pattern) != s[0]:
                c.execute("UPDATE conversations SET summary = ? WHERE id = ?", (scrub(s[0], pattern), cid))
                out.deleted.append(f"summary of conversation {cid}: the forgotten words")
            # a conversation is titled with its first message: a copy too
            if s and s[1] and scrub(s[1], pattern) != s[1]:
                c.execute("UPDATE conversations SET title = ? WHERE id = ?", (scrub(s[1], pattern), cid))
                out.deleted.append(f"title of conversation {cid}: the forgotten words")
            versions = c.execute(
                "SELECT version, text FROM instruction_versions WHERE conversation_id = ? ORDER BY version", (cid,)
            ).fetchall()
            if not versions:
                continue
            current = versions[-1]["text"]
            kept = [line for line in current.splitlines() if keep(line)]
            # older versions are history: redacted in place, never rewritten into something else
            for v in versions:
                if redact(v["text"]) != v["text"]:
                    held.add((cid, v["version"]))
                    c.execute(
                        "UPDATE instruction_versions SET text = ? WHERE conversation_id = ? AND version = ?",
                        (redact(v["text"]), cid, v["version"]),
                    )
            if kept != current.splitlines():
                version = versions[-1]["version"] + 1
                text = "\n".join(kept)
                c.execute(
                    "INSERT INTO instruction_versions (conversation_id, version, text, reason, source, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (cid, version, text, "a memory was forgotten", "forget", now()),
                )
                out.instructions.append((cid, version, text))
                out.deleted.append(f"instruction of conversation {cid}: the line built from it (now version {version})")
            for _cid, seq, _kind, payload in _events_of_kinds(c, [cid], ("instruction.changed",)):
                data = json.loads(payload)
                shown = redact(data.get("text", ""))
                if shown != data.get("text", ""):
                    data["text"] = shown
                    c.execute(
                        "UPDATE events SET payload = ? WHERE conversation_id = ? AND seq = ?",
                        (json.dumps(data, ensure_ascii=False), cid, seq),
                    )
                    out.deleted.append(f"event {cid}#{seq}: a forgotten instruction line")
        return held

    def _scrub_event(
        self, c: Conn, cid: str, seq: int, payload: str, pattern: re.Pattern[str] | None, ids: set[str], out: Erased
    ) -> None:
        """Drop an event that was only about a forgotten memory; elsewhere, take the memory and its words out."""
        data = json.loads(payload)
        kind = data.get("kind")
        if (kind == "memory.write" and data.get("item", {}).get("id") in ids) or (
            kind == "injection" and data.get("reason", "").removeprefix("recalled memory ") in ids
        ):
            c.execute("DELETE FROM events WHERE conversation_id = ? AND seq = ?", (cid, seq))
            out.count("events that carried it", 1)
            return
        new = _scrub_json(data, pattern, ids)
        if new != data:
            c.execute(
                "UPDATE events SET payload = ? WHERE conversation_id = ? AND seq = ?",
                (json.dumps(new, ensure_ascii=False), cid, seq),
            )
            out.deleted.append(f"event {cid}#{seq}: the forgotten words")

    # -- rows --------------------------------------------------------------------------
    def _drop(self, c: Conn, row: Any, out: Erased) -> None:
        """Delete one memory row with its keyword and vector index entries and its neighbours' copies of its text."""
        memory_id, user_id, text = row["id"], row["user_id"], row["text"]
        found = c.execute("SELECT rowid FROM memories WHERE id = ?", (memory_id,)).fetchone()
        if found is None:
            return
        rid = found[0]
        out.deleted.append(f"memories: {memory_id} ({row['kind']})")
        n = c.execute("DELETE FROM memory_fts WHERE rowid = ?", (rid,)).rowcount
        if n:
            out.deleted.append(f"memory_fts: {n} row(s)")
        # the notes just before and after it were indexed with its text as context: their
        # vectors that mix its text in point at it; without vectors, look at the conversation
        neighbours = {r[0] for r in c.execute("SELECT DISTINCT memory FROM memory_vectors WHERE with_memory = ?", (rid,))}
        if row["conversation_id"]:
            for order in ("id < ? ORDER BY id DESC", "id > ? ORDER BY id"):
                n = c.execute(
                    f"SELECT rowid FROM memories WHERE conversation_id = ? AND kind = 'raw' AND {order} LIMIT 1",
                    (row["conversation_id"], memory_id),
                ).fetchone()
                if n:
                    neighbours.add(n[0])
        neighbours.discard(rid)
        contexts = [
            (r, ctx[0]) for r in neighbours
            if (ctx := c.execute("SELECT context FROM memory_fts WHERE rowid = ?", (r,)).fetchone()) is not None
        ]
        if not neighbours and text:
            contexts = c.execute(
                "SELECT rowid, context FROM memory_fts WHERE user_id = ? AND context LIKE ? ESCAPE '\\'",
                (user_id, _like(text)),
            ).fetchall()
        for r, context in contexts:
            if text and text in (context or ""):
                c.execute("UPDATE memory_fts SET context = ? WHERE rowid = ?", (context.replace(text, "").strip(), r))
                out.deleted.append("memory_fts: context of a neighbouring memory")
        self._drop_vectors(c, user_id, "memory = ? OR with_memory = ?", (rid, rid), out)
        # the fact it replaced (if any) becomes current again; links to it go
        c.execute("UPDATE memories SET superseded_by = NULL WHERE superseded_by = ?", (memory_id,))
        c.execute("UPDATE memories SET supersedes = NULL WHERE supersedes = ?", (memory_id,))
        c.execute("DELETE FROM memory_sources WHERE memory_id = ?", (memory_id,))
        c.execute("DELETE FROM memories WHERE id = ?", (memory_id,))

    def _drop_vectors(self, c: Conn, user_id: str, where: str, args: tuple[Any, ...], out: Erased) -> None:
        vids = [r[0] for r in c.execute(f"SELECT id FROM memory_vectors WHERE {where}", args)]
        if not vids:
            return
        marks = ",".join("?" * len(vids))
        c.execute(f"DELETE FROM memory_vectors WHERE id IN ({marks})", vids)
        out.deleted.append(f"memory_vectors: {len(vids)} float32 vector(s)")
        if _has_table(c, "memory_vec"):
            n = c.execute(f"DELETE FROM memory_vec WHERE rowid IN ({marks})", vids).rowcount
            out.deleted.append(f"memory_vec: {n} binary vector(s)")
        c.execute(
            "INSERT INTO memory_index_state (user_id, removed) VALUES (?, 1)"
            " ON CONFLICT (user_id) DO UPDATE SET removed = removed + 1",
            (user_id,),
        )

    def _rewrite(self, c: Conn, row: Any, text: str) -> None:
        """Give a memory new text: its keyword row is rewritten and its vectors dropped (re-embedded after)."""
        rid = c.execute("SELECT rowid FROM memories WHERE id = ?", (row["id"],)).fetchone()[0]
        c.execute("UPDATE memories SET text = ?, updated_at = ? WHERE id = ?", (text, now(), row["id"]))
        c.execute("UPDATE memory_fts SET text = ? WHERE rowid = ?", (text, rid))
        self._drop_vectors(c, row["user_id"], "memory = ? OR with_memory = ?", (rid, rid), Erased())

    # -- messages and conversations ------------------------------------------------------
    def _delete_messages(self, c: Conn, ids: list[str], out: Erased) -> None:
        """Delete messages (and the replies to them) with every memory, thought, injection and event of theirs."""
        doomed = set(ids)
        for mid in ids:
            doomed |= {r[0] for r in c.execute("SELECT id FROM messages WHERE reply_to = ?", (mid,))}
        frozen = frozenset(doomed)
        convs = {r[0] for r in _in(c, "SELECT DISTINCT conversation_id FROM messages WHERE id IN ({})", doomed)}
        # memories made from them: forgotten whole when nothing else is their source
        whole, trimmed = [], 0
        for row in _memories_from(c, list(doomed)):
            srcs = set(json.loads(row["sources"]))
            if srcs <= doomed or row["kind"] in ("raw", "summary"):
                whole.append(row)
            else:
                kept = sorted(srcs - doomed)
                c.execute("UPDATE memories SET sources = ? WHERE id = ?", (json.dumps(kept), row["id"]))
                for m in srcs & doomed:
                    c.execute("DELETE FROM memory_sources WHERE message_id = ? AND memory_id = ?", (m, row["id"]))
                trimmed += 1
        self._forget(c, whole, out, keep_sources=False, deleting=frozen)
        out.count("memories that keep another source (this one removed from them)", trimmed)
        for table, column in (("thoughts", "turn_id"), ("injections", "turn_id")):
            out.count(table, sum(x.rowcount for x in _each(c, f"DELETE FROM {table} WHERE {column} IN ({{}})", doomed)))
        n = sum(x.rowcount for x in _each(c, "DELETE FROM events WHERE turn IN ({})", doomed))
        n += sum(x.rowcount for x in _each(c, "DELETE FROM events WHERE ref IN ({})", doomed))
        out.count("events", n)
        titles = {
            r[0]: r[1] for r in _in(c, "SELECT conversation_id, content FROM messages WHERE role = 'user' AND id IN ({})", doomed)
        }
        out.count("messages", sum(x.rowcount for x in _each(c, "DELETE FROM messages WHERE id IN ({})", doomed)))
        for cid in convs:
            self._rebuild_summary(c, cid)
            # a title made from a deleted message goes with it: the next message titles the conversation
            row = c.execute("SELECT title FROM conversations WHERE id = ?", (cid,)).fetchone()
            if row and cid in titles and row[0] and titles[cid].startswith(row[0]):
                first = c.execute(
                    "SELECT content FROM messages WHERE conversation_id = ? AND role = 'user' ORDER BY id LIMIT 1", (cid,)
                ).fetchone()
                c.execute("UPDATE conversations SET title = ? WHERE id = ?", ((first[0][:60] if first else ""), cid))
        out.conversations |= convs

    def _rebuild_summary(self, c: Conn, conversation_id: str) -> None:
        """The running summary again from the summary memories still there (none: start over)."""
        rows = c.execute(
            "SELECT text, sources FROM memories WHERE conversation_id = ? AND kind = 'summary' ORDER BY id", (conversation_id,)
        ).fetchall()
        text = " ".join(r["text"] for r in rows)[-self.summary_chars :]
        until = max((s for r in rows for s in json.loads(r["sources"])), default=None)
        c.execute("UPDATE conversations SET summary = ?, summarized_until = ? WHERE id = ?", (text, until, conversation_id))

    def _delete_conversation(self, c: Conn, conversation_id: str, out: Erased) -> None:
        ids = [r[0] for r in c.execute("SELECT id FROM messages WHERE conversation_id = ?", (conversation_id,))]
        if ids:
            self._delete_messages(c, ids, out)
        rest = c.execute("SELECT * FROM memories WHERE conversation_id = ?", (conversation_id,)).fetchall()
        self._forget(c, rest, out, keep_sources=False, deleting=frozenset(ids))
        out.count("events", c.execute("DELETE FROM events WHERE conversation_id = ?", (conversation_id,)).rowcount)
        # messages, thoughts, injections, instruction versions and room rows cascade
        out.count("conversations", c.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,)).rowcount)
        out.deleted_conversations.add(conversation_id)


def _each(c: Conn, sql: str, values: Iterable[str], size: int = 500) -> list[Any]:
    """Run ``sql`` (with ``{}`` for the placeholders) over ``values`` in chunks; the cursors."""
    vals = list(values)
    return [
        c.execute(sql.format(",".join("?" * len(vals[i : i + size]))), vals[i : i + size]) for i in range(0, len(vals), size)
    ]


def _in(c: Conn, sql: str, values: Iterable[str]) -> list[Any]:
    return [row for cur in _each(c, sql, values) for row in cur.fetchall()]


def _memories_from(c: Conn, messages: list[str]) -> list[Any]:
    """Every memory with one of ``messages`` among its sources."""
    return _in(
        c,
        "SELECT DISTINCT m.* FROM memory_sources s JOIN memories m ON m.id = s.memory_id WHERE s.message_id IN ({})",
        messages,
    )


def _conversations_of(c: Conn, users: list[str]) -> list[str]:
    """The conversations these people own or share (rooms)."""
    out: set[str] = set()
    for u in users:
        out |= {r[0] for r in c.execute(
            "SELECT id FROM conversations WHERE user_id = ? UNION SELECT conversation_id FROM room_members WHERE user_id = ?",
            (u, u),
        )}
    return sorted(out)


def _like_any(c: Conn, sql: str, args: tuple[Any, ...], column: str, needles: Iterable[str]) -> list[Any]:
    """Rows of ``sql`` whose ``column`` contains one of ``needles`` (any case)."""
    needles = [n for n in needles if n]
    if not needles:
        return []
    where = " OR ".join(f"{column} LIKE ? ESCAPE '\\'" for _ in needles)
    return c.execute(f"{sql} AND ({where})", (*args, *(_like(n) for n in needles))).fetchall()


def _events_of(c: Conn, conversations: list[str], needles: Iterable[str]) -> list[Any]:
    """Events of these conversations whose payload contains one of ``needles`` (any case), each once."""
    needles = [n for n in needles if n]
    if not needles:
        return []
    where = " OR ".join("payload LIKE ? ESCAPE '\\'" for _ in needles)
    out: dict[tuple[str, int], Any] = {}
    for cid in conversations:
        for row in c.execute(
            f"SELECT conversation_id, seq, kind, payload FROM events WHERE conversation_id = ? AND ({where})",
            (cid, *(_like(n) for n in needles)),
        ):
            out[(row[0], row[1])] = row
    return list(out.values())


def _events_of_kinds(c: Conn, conversations: list[str], kinds: tuple[str, ...]) -> list[Any]:
    marks = ",".join("?" * len(kinds))
    out = []
    for cid in conversations:
        out += c.execute(
            f"SELECT conversation_id, seq, kind, payload FROM events WHERE conversation_id = ? AND kind IN ({marks})",
            (cid, *kinds),
        ).fetchall()
    return out


def _may_see(c: Conn, conversation_id: str, user_id: str) -> bool:
    return c.execute(
        "SELECT 1 FROM conversations WHERE id = ? AND (user_id = ? OR id IN"
        " (SELECT conversation_id FROM room_members WHERE user_id = ?))",
        (conversation_id, user_id, user_id),
    ).fetchone() is not None


def _may_manage(c: Conn, conversation_id: str, user_id: str, is_admin: bool) -> bool:
    """The owner may delete or revert a conversation; so may an admin who is in it."""
    row = c.execute("SELECT user_id FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
    return row is not None and (row[0] == user_id or (is_admin and _may_see(c, conversation_id, user_id)))


def _has_table(c: Conn, name: str) -> bool:
    return c.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None
