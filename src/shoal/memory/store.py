"""The memory store: raw notes, facts, summaries and observations, per user.

Every memory carries its scope (user, optionally bot), kind, provenance
(the message ids it came from), timestamps and, when facts change, a
supersedes link both ways. Beside the table live a full-text index (FTS5:
the memory's text, and its surrounding messages as context) and vector
indexes (sqlite-vec): several vectors per memory — its text, its text with
the message before, with the message after, and each sentence of a longer
text — as float32 for exact scoring and binary-quantised for a fast first
pass.

Search is hybrid: each vector channel, keywords in the text, keywords in
the text with its context, and recency each rank the candidates; the ranks
are fused (weighted reciprocal rank); a question naming a speaker or a date
narrows to what that speaker said or what was said then. On LoCoMo this
lifts evidence recall@10 from 0.57 (BM25 alone) to 0.79; see docs/memory.md. Every query
is scoped to one user; the vector index is partitioned by user, so one
person's search never reads another's rows.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from shoal.engine.cpu import BUDGET
from shoal.errors import NotFound
from shoal.memory import when
from shoal.memory.embed import DIM
from shoal.store.db import Conn, Database, now
from shoal.store.ids import new_id

if TYPE_CHECKING:
    from shoal.memory.embed import Embedder

log = logging.getLogger(__name__)

#: most vectors the first (binary) pass hands on to exact scoring
KNN_MAX_K = 4096

#: attributes where a new value replaces the old one (a person lives in one place)
SINGLE_VALUED = frozenset({"name", "location", "age", "job", "employer", "partner"})
KINDS = ("raw", "fact", "summary", "observation")


@dataclass(slots=True)
class Memory:
    id: str
    user_id: str
    kind: str
    text: str
    attribute: str | None = None
    value: str | None = None
    sources: list[str] = field(default_factory=list)
    method: str = ""
    bot: str | None = None
    conversation_id: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    superseded_by: str | None = None
    supersedes: str | None = None
    #: who said it, in a transcript of several speakers (``ingest(speaker=...)``); None: the person
    speaker: str | None = None
    score: float = 0.0
    #: cosine similarity to the query (0 when found by keyword only)
    similarity: float = 0.0
    #: why it was found: per-signal ranks, e.g. {"vector": 1, "keyword": 4}
    why: dict[str, int] = field(default_factory=dict)
    #: every (attribute, value) a fact memory states, each with its own ``superseded_by``
    facts: list[dict[str, Any]] = field(default_factory=list)

    def live_facts(self) -> list[tuple[str, str]]:
        """(attribute, value) pairs of this memory that no newer fact replaced."""
        if self.superseded_by is not None:
            return []
        if not self.facts and self.attribute and self.value:
            return [(self.attribute, self.value)]
        return [(f["attribute"], f["value"]) for f in self.facts if not f.get("superseded_by")]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "text": self.text,
            "attribute": self.attribute,
            "value": self.value,
            "facts": self.facts,
            "sources": self.sources,
            "method": self.method,
            "bot": self.bot,
            "conversation": self.conversation_id,
            "created_at": self.created_at,
            "superseded_by": self.superseded_by,
            "supersedes": self.supersedes,
            "speaker": self.speaker,
            "score": round(self.score, 5),
        }


def _row(r: Any) -> Memory:
    return Memory(
        id=r["id"],
        user_id=r["user_id"],
        kind=r["kind"],
        text=r["text"],
        attribute=r["attribute"],
        value=r["value"],
        sources=json.loads(r["sources"]),
        method=r["method"],
        bot=r["bot"],
        conversation_id=r["conversation_id"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        superseded_by=r["superseded_by"],
        supersedes=r["supersedes"],
        facts=json.loads(r["facts"]) if r["facts"] else [],
        speaker=r["speaker"],
    )


def content_hash(kind: str, text: str, attribute: str | None, value: str | None, pairs: Sequence[tuple[str, str]] = ()) -> str:
    """Identity of a memory's content: a fact is its attribute(s) and value(s), anything else its text."""
    if kind == "fact":
        every = sorted({(a, " ".join(v.lower().split())) for a, v in (pairs or [(attribute, value)]) if a and v})
        body = "\x01".join(f"{a}\x00{v}" for a, v in every)
    else:
        body = text
    norm = " ".join(body.lower().split())
    return hashlib.sha256(f"{kind}\x00{norm}".encode()).hexdigest()


_WORD = re.compile(r"[a-z0-9']+")
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have i i'm im is it its me my of on or so that the their them "
    "they this to was we were what when where which who will with you your do does did not no yes just very "
    "about can could would should there here then than too also been being am our us he she his her him how "
    "why whom whose into out up down over under again further once all any both each few more most other some "
    "such only own same s t don now".split()
)


def keywords(text: str) -> set[str]:
    return {w.strip("'") for w in _WORD.findall(text.lower()) if w.strip("'") not in STOPWORDS and len(w) > 1}


def named_speakers(query: str, speakers: Iterable[str]) -> list[str]:
    """The known speakers that ``query`` names, as whole words ("Caroline's" names Caroline)."""
    low = query.lower()
    return [s for s in speakers if s and re.search(r"(?<![\w])" + re.escape(s.lower()) + r"(?![\w])", low)]


def without_names(query: str, names: Sequence[str]) -> str:
    for name in names:
        query = re.sub(r"(?<![\w])" + re.escape(name) + r"(?:'s)?(?![\w])", " ", query, flags=re.I)
    return query


def note_text(text: str, speaker: str | None) -> str:
    """What a memory of a transcript's turn reads: its words under its speaker's label."""
    return f"{speaker}: {text}" if speaker else text


def spoken(text: str, speaker: str | None) -> str:
    """A memory's words without its speaker's label (``note_text`` undone: "Caroline: I paint" → "I paint")."""
    return text[len(speaker) + 2 :] if speaker and text.startswith(f"{speaker}: ") else text


def as_first_person(query: str, names: Sequence[str]) -> str:
    """The question as the speakers would put it about their own words: "What did Caroline
    research?" → "What did I research?" ("Caroline's" → "my"); with several, "Did John and James
    study together?" → "Did we study together?". What people say is in the first person, and the
    embedding matches it much better so (docs/memory.md)."""
    alt = "|".join(re.escape(n) for n in names)
    me, mine = ("I", "my") if len(names) == 1 else ("we", "our")
    if len(names) > 1:
        query = re.sub(rf"(?<![\w])(?:{alt})(?:'s)?(?:\s*(?:,|and|&)\s*(?:{alt})(?:'s)?)+(?![\w])", me, query, flags=re.I)
    query = re.sub(rf"(?<![\w])(?:{alt})'s(?![\w])", mine, query, flags=re.I)
    return re.sub(rf"(?<![\w])(?:{alt})(?![\w])", me, query, flags=re.I)


def fts_query(text: str) -> str | None:
    """An FTS5 query matching any content word of ``text`` (quoted: no operator injection)."""
    words = sorted(keywords(text))
    if not words:
        return None
    return " OR ".join('"' + w.replace('"', "") + '"' for w in words[:32])


@dataclass(frozen=True, slots=True)
class Weights:
    """Reciprocal-rank fusion weights: score = Σ w / (k + rank), one term per signal (``date`` and
    ``when`` are flat bonuses, ``speaker`` a switch).

    Chosen on LoCoMo conversations 1-5 and checked on 6-10 (docs/memory.md); every one can be
    switched off in the bench (``bench/memory_locomo.py --ablate NAME``) to see what it earns.
    """

    vector: float = 1.0        # the memory's own text
    before: float = 1.0        # its text with the message before it
    after: float = 1.0         # its text with the message after it
    sentence: float = 1.0      # its best-matching sentence
    keyword: float = 1.0       # BM25 on its text
    keyword_context: float = 1.5  # BM25 on its text and surrounding messages
    recency: float = 0.05
    #: pseudo-relevance feedback: the candidates ranked again by a query vector moved towards
    #: the text vectors of the first pass's best few. Off: on LoCoMo conversations 1-2 it cost
    #: recall@10 (0.7589 without; 0.7405 at weight 1, mix 1, top 3; 0.7546 at 0.5, 0.5, top 2)
    feedback: float = 0.0
    feedback_top: int = 2
    feedback_mix: float = 0.5
    #: not a rank: at > 0 a question naming exactly one speaker ("What did Caroline research?")
    #: searches that speaker's words and the person's own; and a question naming speakers leaves
    #: their names out of the keyword query (in others' turns a name is mostly a form of address:
    #: "Wow, Caroline!") and is embedded in the first person ("What did I research?", "Did we
    #: study together?"). On LoCoMo 96% of a one-speaker question's evidence is that speaker's
    #: (docs/memory.md)
    speaker: float = 1.0
    #: flat bonuses, not ranks: a memory made in the window of a date the question names ("in
    #: December 2023", memory.when), and, for a question asking when, a memory that says when
    date: float = 0.3
    when: float = 0.2
    k: int = 7

    @property
    def uses_vectors(self) -> bool:
        return any(x > 0 for x in (self.vector, self.before, self.after, self.sentence))


CHANNELS = ("text", "before", "after", "sentence")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def sentences(text: str) -> list[str]:
    parts = [p.strip() for p in _SENTENCE.split(text) if len(p.strip()) > 3]
    return parts if len(parts) > 1 else []


@dataclass(slots=True)
class NewMemory:
    user_id: str
    kind: str
    text: str
    attribute: str | None = None
    value: str | None = None
    sources: list[str] = field(default_factory=list)
    method: str = ""
    bot: str | None = None
    conversation_id: str | None = None
    created_at: float | None = None
    #: the message before this one (its text): indexed as context, embedded with it
    before: str | None = None
    #: the memory of the message before, which gains this one as its "after" context
    previous: str | None = None
    #: every (attribute, value) of a fact stated in this one clause (default: attribute, value)
    facts: list[tuple[str, str]] = field(default_factory=list)
    #: a message this memory copies word for word: it is stored only if that message
    #: (in ``conversation_id``) still reads ``text`` when the write happens, so a forget
    #: or a delete between reading the message and storing its copy wins
    verbatim_of: str | None = None
    #: who said it, when not the person themself (see ``Memory.speaker``)
    speaker: str | None = None

    @property
    def pairs(self) -> list[tuple[str, str]]:
        if self.facts:
            return list(self.facts)
        return [(self.attribute, self.value)] if self.attribute and self.value else []


def _still_reads(c: Conn, message_id: str, conversation_id: str | None, text: str) -> bool:
    row = c.execute(
        "SELECT content, status FROM messages WHERE id = ? AND conversation_id IS ?", (message_id, conversation_id)
    ).fetchone()
    # a reply the person had written again is not something shoal says (issue 14): no copy of it
    return row is not None and row["content"] == text and row["status"] != "replaced"


def sign_codes(vectors: np.ndarray) -> np.ndarray:
    """384-bit sign codes, (n, 6) uint64: bit i set when component i > 0 (sqlite-vec's ``vec_quantize_binary``)."""
    bits = np.packbits(np.asarray(vectors, dtype=np.float32).reshape(-1, DIM) > 0, axis=1, bitorder="little")
    return np.ascontiguousarray(bits).view(np.uint64)


@dataclass(slots=True)
class _UserCodes:
    added: int
    removed: int
    last_id: int
    memories: np.ndarray  # memories.rowid of each vector
    codes: np.ndarray  # (6, n) uint64: word i of every code is contiguous


class BinaryIndex:
    """The first vector pass: every vector's sign code per user, in memory, compared by popcount.

    The codes are persisted in sqlite-vec's ``memory_vec`` (binary-quantised,
    partitioned by user). sqlite-vec's own brute-force KNN over them took
    21 ms at 100k vectors; XOR + popcount over the same codes in numpy takes
    about a millisecond (docs/memory.md). ``memory_index_state`` counts each
    user's added and removed vectors in the same transactions as the writes,
    so any process sees another's writes: new vectors are appended, a removal
    reloads the user's codes.
    """

    def __init__(self) -> None:
        self._users: dict[str, _UserCodes] = {}
        self._lock = threading.Lock()

    def nearest(self, c: Conn, user_id: str, query: np.ndarray, k: int) -> list[int]:
        """Rowids of the memories owning the ``k`` vectors nearest to ``query`` in hamming distance."""
        entry = self._current(c, user_id)
        n = len(entry.memories)
        if n == 0 or k <= 0:
            return []
        q = sign_codes(query)[0]
        # column by column (codes are stored 6 x n): 5x faster than one (n, 6) pass at 1M
        dist = np.bitwise_count(entry.codes[0] ^ q[0]).astype(np.uint16)
        tmp = np.empty(n, dtype=np.uint64)
        for i in range(1, len(q)):
            np.bitwise_xor(entry.codes[i], q[i], out=tmp)
            dist += np.bitwise_count(tmp)
        dist = dist.astype(np.int32)  # argpartition is 3x faster on int32 than on uint16
        if k < n:
            top = np.argpartition(dist, k - 1)[:k]
            top = top[np.argsort(dist[top], kind="stable")]
        else:
            top = np.argsort(dist, kind="stable")
        return list(dict.fromkeys(entry.memories[top].tolist()))

    def _current(self, c: Conn, user_id: str) -> _UserCodes:
        row = c.execute("SELECT added, removed FROM memory_index_state WHERE user_id = ?", (user_id,)).fetchone()
        added, removed = (row[0], row[1]) if row else (0, 0)
        with self._lock:
            entry = self._users.get(user_id)
        if entry is not None and entry.added == added and entry.removed == removed:
            return entry
        if entry is None or entry.removed != removed:
            fresh = self._load(c, user_id, after=0)
            entry = _UserCodes(added, removed, *fresh)
        else:
            last_id, mems, codes = self._load(c, user_id, after=entry.last_id)
            entry = _UserCodes(
                added, removed, max(entry.last_id, last_id),
                np.concatenate([entry.memories, mems]), np.concatenate([entry.codes, codes], axis=1),
            )
        with self._lock:
            self._users[user_id] = entry
        return entry

    @staticmethod
    def _load(c: Conn, user_id: str, *, after: int) -> tuple[int, np.ndarray, np.ndarray]:
        """(last vector id, memory rowids, (6, n) codes) of the user's vectors with id > ``after``."""
        from shoal.store.sqlite import vec_available

        empty = (after, np.zeros(0, dtype=np.int64), np.zeros((DIM // 64, 0), dtype=np.uint64))
        if after == 0 and vec_available():
            # a full load reads the 48-byte codes sqlite-vec keeps, not 1.5 KB float vectors
            owners = c.execute(
                "SELECT v.id, v.memory FROM memories m JOIN memory_vectors v ON v.memory = m.rowid"
                " WHERE m.user_id = ? ORDER BY v.id",
                (user_id,),
            ).fetchall()
            if not owners:
                return empty
            ids = np.fromiter((r[0] for r in owners), dtype=np.int64, count=len(owners))
            mems = np.fromiter((r[1] for r in owners), dtype=np.int64, count=len(owners))
            rows = c.execute("SELECT rowid, emb FROM memory_vec WHERE user_id = ?", (user_id,)).fetchall()
            code_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            order = np.argsort(code_ids)
            raw = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.uint8).reshape(len(rows), DIM // 8)[order]
            pos = np.searchsorted(code_ids[order], ids)
            ok = (pos < len(rows)) & (code_ids[order][np.minimum(pos, len(rows) - 1)] == ids)
            codes = np.ascontiguousarray(raw[pos[ok]]).view(np.uint64)
            return int(ids[-1]), mems[ok], np.ascontiguousarray(codes.T)
        rows = c.execute(
            "SELECT v.id, v.memory, v.vec FROM memory_vectors v JOIN memories m ON m.rowid = v.memory"
            " WHERE m.user_id = ? AND v.id > ? ORDER BY v.id",
            (user_id, after),
        ).fetchall()
        if not rows:
            return empty
        floats = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32)
        mems = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
        return rows[-1][0], mems, np.ascontiguousarray(sign_codes(floats).T)

    def forget_cache(self) -> None:
        with self._lock:
            self._users.clear()


class MemoryStore:
    def __init__(self, db: Database, embedder: "Embedder | None" = None) -> None:
        self.db = db
        self._embedder = embedder
        self.weights = Weights()
        self.index = BinaryIndex()

    @property
    def embedder(self) -> "Embedder":
        if self._embedder is None:
            from shoal.memory.embed import shared_embedder

            self._embedder = shared_embedder()
        return self._embedder

    @property
    def vectors(self) -> bool:
        from shoal.store.sqlite import vec_available

        return vec_available()

    # -- writing --------------------------------------------------------------
    async def add(
        self,
        user_id: str,
        kind: str,
        text: str,
        *,
        attribute: str | None = None,
        value: str | None = None,
        sources: Iterable[str] = (),
        method: str = "",
        bot: str | None = None,
        conversation_id: str | None = None,
        created_at: float | None = None,
        before: str | None = None,
        previous: str | None = None,
    ) -> tuple[Memory, Memory | None]:
        """Store a memory; returns (memory, superseded).

        A fact identical to a live one is not stored twice (the existing one
        is returned, its sources extended). A single-valued attribute with a
        new value supersedes the live fact, which stays as history.
        """
        [(m, old)] = await self.add_many(
            [
                NewMemory(
                    user_id, kind, text, attribute, value, list(sources), method, bot, conversation_id, created_at,
                    before, previous,
                )
            ]
        )
        return m, old

    async def add_many(self, items: Sequence[NewMemory]) -> list[tuple[Memory, Memory | None]]:
        """Store several memories in one transaction (all their vectors embedded together first).

        An item whose ``verbatim_of`` message no longer reads its text is left
        out, so the result can be shorter than ``items``.
        """
        for it in items:
            if it.kind not in KINDS:
                raise ValueError(f"unknown memory kind {it.kind!r}")
        prev: dict[str, tuple[str, str | None]] = {}
        wanted = {it.previous for it in items if it.previous}
        if wanted:
            marks = ",".join("?" * len(wanted))
            rows = await self.db.read(
                lambda c: c.execute(f"SELECT id, text, speaker FROM memories WHERE id IN ({marks})", list(wanted)).fetchall()
            )
            prev = {r["id"]: (r["text"], r["speaker"]) for r in rows}
        plans = [self._vector_plan(it, *prev.get(it.previous or "", (None, None))) for it in items]
        vecs = None
        if self.vectors:
            flat = [text for plan in plans for _, text, _, _ in plan]
            try:
                vecs = await self.embedder.embed(flat) if flat else None
            except Exception as e:  # noqa: BLE001 - the memory is kept; reindex() embeds it later
                log.warning("storing memories without vectors (keyword search only until reindexed): %s", e)
        t = now()

        def fn(c: Conn) -> list[tuple[Memory, Memory | None]]:
            out, i = [], 0
            for it, plan in zip(items, plans):
                chunk = [] if vecs is None else [(channel, owner, mixed, vecs[i + j]) for j, (channel, _, owner, mixed) in enumerate(plan)]
                i += len(plan)
                if it.verbatim_of and not _still_reads(c, it.verbatim_of, it.conversation_id, it.text):
                    continue
                out.append(self._insert(c, it, chunk, t))
            return out

        return await self.db.write(fn)

    @staticmethod
    def _vector_plan(
        it: NewMemory, previous_text: str | None, previous_speaker: str | None = None
    ) -> list[tuple[str, str, str, str | None]]:
        """(channel, text to embed, whose vector, whose text is mixed in): 'self' or a memory id.

        What is embedded is what was said, without its speaker's label: the question about a
        speaker is embedded in the first person too (``as_first_person``)."""
        own = spoken(it.text, it.speaker)
        plan: list[tuple[str, str, str, str | None]] = [("text", own, "self", None)]
        if it.before:
            plan.append(("before", f"{spoken(it.before, previous_speaker)}\n{own}", "self", it.previous))
        plan += [("sentence", sent, "self", None) for sent in sentences(own)]
        if it.previous and previous_text is not None:
            plan.append(("after", f"{spoken(previous_text, previous_speaker)}\n{own}", it.previous, "self"))
        return plan

    def _insert(
        self, c: Conn, it: NewMemory, vectors: list[tuple[str, str, str | None, np.ndarray]], t: float
    ) -> tuple[Memory, Memory | None]:
        pairs = it.pairs if it.kind == "fact" else []
        attribute, value = (pairs[0] if pairs else (it.attribute, it.value))
        chash = content_hash(it.kind, it.text, attribute, value, pairs)
        created = it.created_at or t
        dup = c.execute(
            "SELECT * FROM memories WHERE user_id = ? AND content_hash = ? AND superseded_by IS NULL AND bot IS ?",
            (it.user_id, chash, it.bot),
        ).fetchone()
        if dup:
            merged = list(dict.fromkeys(json.loads(dup["sources"]) + it.sources))
            c.execute("UPDATE memories SET sources = ?, updated_at = ? WHERE id = ?", (json.dumps(merged), t, dup["id"]))
            c.executemany(
                "INSERT OR IGNORE INTO memory_sources (message_id, memory_id) VALUES (?, ?)", [(s, dup["id"]) for s in it.sources]
            )
            m = _row(dup)
            m.sources = merged
            return m, None
        mid = new_id()
        old = None
        for a, v in pairs:
            if a not in SINGLE_VALUED:
                continue
            # the live fact holding this attribute: its entry is replaced, and the whole
            # memory once nothing it states is current any more
            for prev in c.execute(
                "SELECT * FROM memories m WHERE user_id = ? AND kind = 'fact' AND superseded_by IS NULL AND bot IS ?"
                " AND EXISTS (SELECT 1 FROM json_each(m.facts) j WHERE json_extract(j.value, '$.attribute') = ?"
                " AND json_extract(j.value, '$.superseded_by') IS NULL)",
                (it.user_id, it.bot, a),
            ).fetchall():
                entries = json.loads(prev["facts"])
                changed = False
                for e in entries:
                    if e["attribute"] == a and not e.get("superseded_by") and e["value"].lower() != v.lower():
                        e["superseded_by"] = mid
                        changed = True
                if not changed:
                    continue
                whole = all(e.get("superseded_by") for e in entries)
                c.execute(
                    "UPDATE memories SET facts = ?, superseded_by = ?, updated_at = ? WHERE id = ?",
                    (json.dumps(entries, ensure_ascii=False), mid if whole else None, t, prev["id"]),
                )
                if old is None:
                    old = _row(prev)
                    old.facts = entries
                    old.superseded_by = mid if whole else None
        facts_json = json.dumps([{"attribute": a, "value": v, "superseded_by": None} for a, v in pairs], ensure_ascii=False) if pairs else None
        cur = c.execute(
            "INSERT INTO memories (id, user_id, bot, conversation_id, kind, text, attribute, value, sources, method,"
            " created_at, updated_at, content_hash, supersedes, facts, speaker)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                mid, it.user_id, it.bot, it.conversation_id, it.kind, it.text, attribute, value,
                json.dumps(it.sources), it.method, created, t, chash, old.id if old else None, facts_json, it.speaker,
            ),
        )
        rowid = cur.lastrowid
        c.executemany("INSERT OR IGNORE INTO memory_sources (message_id, memory_id) VALUES (?, ?)", [(s, mid) for s in it.sources])
        # the keyword row shares the memory's rowid: found without scanning the FTS table
        c.execute(
            "INSERT INTO memory_fts (rowid, text, context, memory_id, user_id) VALUES (?, ?, ?, ?, ?)",
            (rowid, it.text, it.before or "", mid, it.user_id),
        )
        def resolve(ref: str | None) -> int | None:
            if ref is None:
                return None
            if ref == "self":
                return rowid
            row = c.execute("SELECT rowid FROM memories WHERE id = ?", (ref,)).fetchone()
            return row[0] if row else None

        for channel, owner, mixed, vec in vectors:
            owner_rowid = resolve(owner)
            if owner_rowid is not None:
                self._index_vector(c, owner_rowid, it.user_id, channel, vec, with_memory=resolve(mixed))
        if it.previous:
            # the previous message's memory gains this text as its context too
            c.execute(
                "UPDATE memory_fts SET context = trim(context || ' ' || ?)"
                " WHERE rowid = (SELECT rowid FROM memories WHERE id = ?)",
                (it.text, it.previous),
            )
        m = Memory(
            mid, it.user_id, it.kind, it.text, attribute, value, it.sources, it.method, it.bot,
            it.conversation_id, created, t, None, old.id if old else None,
            facts=json.loads(facts_json) if facts_json else [], speaker=it.speaker,
        )
        return m, old

    def _index_vector(
        self, c: Conn, memory_rowid: int, user_id: str, channel: str, vec: np.ndarray, *, with_memory: int | None = None
    ) -> None:
        blob = vec.astype(np.float32).tobytes()
        cur = c.execute(
            "INSERT INTO memory_vectors (memory, channel, with_memory, vec) VALUES (?, ?, ?, ?)",
            (memory_rowid, channel, with_memory, blob),
        )
        c.execute(
            "INSERT INTO memory_vec (rowid, user_id, emb) VALUES (?, ?, vec_quantize_binary(?))",
            (cur.lastrowid, user_id, blob),
        )
        c.execute(
            "INSERT INTO memory_index_state (user_id, added) VALUES (?, 1)"
            " ON CONFLICT (user_id) DO UPDATE SET added = added + 1",
            (user_id,),
        )

    async def reindex(self, *, batch: int = 256) -> int:
        """Embed memories that have no vector yet (written before vectors existed). Returns how many."""
        if not self.vectors:
            return 0
        done = 0
        while True:
            rows = await self.db.read(
                lambda c: c.execute(
                    "SELECT m.rowid AS rid, m.user_id, m.text, m.speaker FROM memories m"
                    " WHERE NOT EXISTS (SELECT 1 FROM memory_vectors v WHERE v.memory = m.rowid) LIMIT ?",
                    (batch,),
                ).fetchall()
            )
            if not rows:
                return done
            vecs = await self.embedder.embed([spoken(r["text"], r["speaker"]) for r in rows])

            def fn(c: Conn) -> None:
                for r, v in zip(rows, vecs):
                    self._index_vector(c, r["rid"], r["user_id"], "text", v)

            await self.db.write(fn)
            done += len(rows)

    # -- reading --------------------------------------------------------------
    async def get(self, memory_id: str, *, user_id: str | None = None) -> Memory:
        row = await self.db.read(lambda c: c.execute("SELECT * FROM memories WHERE id = ?", (memory_id,)).fetchone())
        if not row or (user_id is not None and row["user_id"] != user_id):
            raise NotFound(f"no memory '{memory_id}'", hint="`shoal memory list` shows your memories")
        return _row(row)

    async def list(
        self,
        user_id: str,
        *,
        kind: str | None = None,
        include_superseded: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Memory]:
        sql = "SELECT * FROM memories WHERE user_id = ?"
        args: list[Any] = [user_id]
        if kind:
            sql += " AND kind = ?"
            args.append(kind)
        if not include_superseded:
            sql += " AND superseded_by IS NULL"
        sql += " ORDER BY id DESC LIMIT ? OFFSET ?"
        args += [limit, offset]
        rows = await self.db.read(lambda c: c.execute(sql, args).fetchall())
        return [_row(r) for r in rows]

    async def facts(self, user_id: str) -> list[Memory]:
        return await self.list(user_id, kind="fact", limit=1000)

    async def history_of(self, user_id: str, attribute: str) -> list[Memory]:
        """Every fact ever held for ``attribute``, newest first (superseded included)."""
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT * FROM memories m WHERE user_id = ? AND kind = 'fact' AND (attribute = ? OR EXISTS"
                " (SELECT 1 FROM json_each(m.facts) j WHERE json_extract(j.value, '$.attribute') = ?)) ORDER BY id DESC",
                (user_id, attribute, attribute),
            ).fetchall()
        )
        return [_row(r) for r in rows]

    async def latest_raw(self, user_id: str, conversation_id: str) -> Memory | None:
        """The newest raw note of a conversation (the previous message's memory)."""
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT * FROM memories WHERE user_id = ? AND conversation_id = ? AND kind = 'raw' ORDER BY id DESC LIMIT 1",
                (user_id, conversation_id),
            ).fetchone()
        )
        return _row(row) if row else None

    async def count(self, user_id: str | None = None) -> int:
        if user_id is None:
            return int(await self.db.read(lambda c: c.execute("SELECT COUNT(*) FROM memories").fetchone()[0]))
        return int(
            await self.db.read(lambda c: c.execute("SELECT COUNT(*) FROM memories WHERE user_id = ?", (user_id,)).fetchone()[0])
        )

    async def search(
        self,
        user_id: str,
        query: str,
        *,
        limit: int = 5,
        kinds: Iterable[str] = ("fact", "raw", "summary", "observation"),
        bots: Sequence[str | None] | None = None,
        include_superseded: bool = False,
        exclude: Iterable[str] = (),
        exclude_sources: Iterable[str] = (),
        exclude_raw_from: Iterable[str] = (),
        weights: Weights | None = None,
        query_vector: np.ndarray | None = None,
        wait_for_vectors: bool = True,
        distinct_sources: bool = True,
        conversation: str | None = None,
    ) -> list[Memory]:
        """The ``limit`` memories of ``user_id`` that best match ``query``.

        ``bots`` restricts the scope: ``None`` in it means the user's own
        memories, a name means that bot's; ``bots=None`` means every scope.
        ``exclude_sources`` drops memories from those messages;
        ``exclude_raw_from`` drops only raw notes of them (the asker already
        sees those messages, but a fact distilled from one is still useful).
        With ``wait_for_vectors=False`` a search made while the embedding
        model is still loading uses keywords and recency only. With
        ``distinct_sources`` a memory whose messages are all covered by a
        better-ranked one is left out (a fact and the raw note it came from
        say the same thing). ``conversation`` keeps only memories made in that
        conversation (recall in a room: only what was said there).
        """
        # a search is short and someone waits on it (recall runs before every reply): it borrows a
        # core from the engine for its whole length, so decoding steps drop a thread meanwhile
        # instead of competing with its keyword pass and vector scoring (the embedding borrows its own)
        with BUDGET.borrow(1):
            return await self._search_async(
                user_id, query, limit=limit, kinds=kinds, bots=bots, include_superseded=include_superseded,
                exclude=exclude, exclude_sources=exclude_sources, exclude_raw_from=exclude_raw_from,
                weights=weights, query_vector=query_vector, wait_for_vectors=wait_for_vectors,
                distinct_sources=distinct_sources, conversation=conversation,
            )

    async def _search_async(
        self,
        user_id: str,
        query: str,
        *,
        limit: int,
        kinds: Iterable[str],
        bots: Sequence[str | None] | None,
        include_superseded: bool,
        exclude: Iterable[str],
        exclude_sources: Iterable[str],
        exclude_raw_from: Iterable[str],
        weights: Weights | None,
        query_vector: np.ndarray | None,
        wait_for_vectors: bool,
        distinct_sources: bool,
        conversation: str | None,
    ) -> list[Memory]:
        w = weights or self.weights
        kinds = list(kinds)
        exclude = set(exclude)
        skip_sources = set(exclude_sources)
        skip_raw = set(exclude_raw_from)
        # candidates per signal: enough for fusion to reorder, few enough to score exactly
        pool = max(40, limit * 4)
        # a question about one speaker: their words, asked as they would ask them (Weights.speaker)
        speaker, vector_query, keyword_query = None, query, query
        speakers: list[str] = []
        years: list[int] = []
        dated = w.date > 0 and when.mentions_time(query)
        if w.speaker > 0 or dated:
            speakers, years = await self.db.read(
                lambda c: (self.speakers(c, user_id) if w.speaker > 0 else [], self.years(c, user_id) if dated else [])
            )
            named = named_speakers(query, speakers)
            if named:
                # one speaker: only their words; several: everyone's, but asked as "we" all the same
                speaker = named[0] if len(named) == 1 else None
                vector_query, keyword_query = as_first_person(query, named), without_names(query, named)
        spans = when.windows(query, years=years) if dated else []
        want_vector = query_vector is None and self.vectors and w.uses_vectors and (wait_for_vectors or self.embedder.ready)
        # keywords need no vector: search them while the query is being embedded
        embedding = asyncio.ensure_future(self.embedder.embed([vector_query])) if want_vector else None
        try:
            keyword_lists = await self.db.read(lambda c: self._keyword_lists(c, user_id, keyword_query, w, pool))
            if embedding is not None:
                query_vector = (await embedding)[0]
        finally:
            if embedding is not None and not embedding.done():
                embedding.cancel()

        def fn(c: Conn) -> list[Memory]:
            found = self._search(
                c, user_id, keyword_lists, query_vector, pool, kinds, bots, include_superseded, exclude, skip_sources,
                skip_raw, w, limit if not distinct_sources else pool, conversation, speaker, spans,
                w.when > 0 and when.asks_when(query),
            )
            if not distinct_sources:
                return found
            out, covered = [], set()
            for m in found:
                if m.sources and set(m.sources) <= covered:
                    continue
                covered.update(m.sources)
                out.append(m)
                if len(out) == limit:
                    break
            return out

        return await self.db.read(fn)

    #: a query term in more memories than this is left out of keyword search: it
    #: would add little to BM25 and make FTS5 score every one of them
    MAX_TERM_DF = 2000

    #: most distinct speakers read for one user (a transcript has a handful)
    MAX_SPEAKERS = 256

    def years(self, c: Conn, user_id: str) -> list[int]:
        """The calendar years ``user_id``'s memories span (a month named without a year is in one of them)."""
        lo, hi = c.execute("SELECT min(created_at), max(created_at) FROM memories WHERE user_id = ?", (user_id,)).fetchone()
        if lo is None:
            return []
        return list(range(datetime.fromtimestamp(lo).year, datetime.fromtimestamp(hi).year + 1))

    def speakers(self, c: Conn, user_id: str) -> list[str]:
        """Everyone but the person who said something in ``user_id``'s memories (index skip-scan)."""
        rows = c.execute(
            "WITH RECURSIVE s(x, n) AS ("
            " SELECT (SELECT min(speaker) FROM memories WHERE user_id = ?1 AND speaker IS NOT NULL), 0"
            " UNION ALL SELECT (SELECT min(speaker) FROM memories WHERE user_id = ?1 AND speaker > s.x), n + 1"
            " FROM s WHERE s.x IS NOT NULL AND n < ?2)"
            " SELECT x FROM s WHERE x IS NOT NULL",
            (user_id, self.MAX_SPEAKERS),
        ).fetchall()
        return [r[0] for r in rows]

    def _keyword_lists(self, c: Conn, user_id: str, query: str, w: Weights, pool: int) -> dict[str, list[int]]:
        """BM25 over the memory texts, and over the texts with their context: rowids, best first."""
        terms = sorted(keywords(query))[:32]
        if not terms or (w.keyword <= 0 and w.keyword_context <= 0):
            return {}
        dfs = []
        for t in terms:
            quoted = '"' + t.replace('"', "") + '"'
            # counted only up to the point where the term stops being useful
            df = c.execute(
                "SELECT count(*) FROM (SELECT 1 FROM memory_fts WHERE memory_fts MATCH ? LIMIT ?)",
                (f"{{text context}} : {quoted}", self.MAX_TERM_DF * 10 + 1),
            ).fetchone()[0]
            if df:
                dfs.append((df, quoted))
        if not dfs:
            return {}
        dfs.sort()
        # only common words: the rarest one alone, unless even that is everywhere
        keep = [q for df, q in dfs if df <= self.MAX_TERM_DF] or [q for df, q in dfs[:1] if df <= self.MAX_TERM_DF * 10]
        if not keep:
            return {}
        fq = " OR ".join(keep)
        lists: dict[str, list[int]] = {}
        for name, column in (("keyword", "text"), ("keyword_context", "{text context}")):
            if getattr(w, name) <= 0:
                continue
            match = f"{column} : ({fq})"
            # rank first, scope after: reading user_id for every match costs 2-3x the ranking
            # itself (it is not indexed). Where other users' memories crowd this one's out of
            # the first rows, fall back to filtering while ranking.
            wide = pool * 3
            ranked = [r[0] for r in c.execute(
                "SELECT rowid FROM memory_fts WHERE memory_fts MATCH ? ORDER BY bm25(memory_fts) LIMIT ?", (match, wide)
            )]
            owner: dict[int, tuple[int, str]] = {}
            for start in range(0, len(ranked), 500):
                part = ranked[start : start + 500]
                for r in c.execute(
                    f"SELECT f.rowid, m.rowid, m.user_id FROM memory_fts f JOIN memories m ON m.id = f.memory_id"
                    f" WHERE f.rowid IN ({','.join('?' * len(part))})",
                    part,
                ):
                    owner[r[0]] = (r[1], r[2])
            mine = [owner[f][0] for f in ranked if f in owner and owner[f][1] == user_id][:pool]
            if len(mine) < pool and len(ranked) == wide:
                mine = [r[0] for r in c.execute(
                    "SELECT m.rowid FROM memory_fts f JOIN memories m ON m.id = f.memory_id"
                    " WHERE memory_fts MATCH ? AND f.user_id = ? ORDER BY bm25(memory_fts) LIMIT ?",
                    (match, user_id, pool),
                )]
            lists[name] = mine
        return lists

    def _search(
        self,
        c: Conn,
        user_id: str,
        keyword_lists: dict[str, list[int]],
        qvec: np.ndarray | None,
        pool: int,
        kinds: list[str],
        bots: Sequence[str | None] | None,
        include_superseded: bool,
        exclude: set[str],
        skip_sources: set[str],
        skip_raw: set[str],
        w: Weights,
        limit: int,
        conversation: str | None = None,
        speaker: str | None = None,
        spans: Sequence[tuple[float, float]] = (),
        asks_when: bool = False,
    ) -> list[Memory]:
        lists: dict[str, list[int]] = dict(keyword_lists)  # signal -> memory rowids, best first
        candidates: set[int] = {rid for order in lists.values() for rid in order}
        for start, end in spans:
            # what was said around a date the question names is a candidate whatever its words
            candidates.update(r[0] for r in c.execute(
                "SELECT rowid FROM memories WHERE user_id = ? AND created_at BETWEEN ? AND ? ORDER BY created_at LIMIT ?",
                (user_id, start, end, pool),
            ))
        if qvec is not None:
            # first pass: hamming distance on 384 bits, over this user's vectors only
            candidates.update(self.index.nearest(c, user_id, qvec, min(pool * 2, KNN_MAX_K)))
        if not candidates:
            return []
        marks = ",".join("?" * len(candidates))
        rows = c.execute(f"SELECT rowid AS rid, * FROM memories WHERE rowid IN ({marks})", list(candidates)).fetchall()
        live: dict[int, Any] = {}
        for r in rows:
            if r["user_id"] != user_id or r["kind"] not in kinds or r["id"] in exclude:
                continue
            if not include_superseded and r["superseded_by"] is not None:
                continue
            if bots is not None and r["bot"] not in bots:
                continue
            if conversation is not None and r["conversation_id"] != conversation:
                continue
            if speaker is not None and r["speaker"] is not None and r["speaker"] != speaker:
                continue  # someone else's words: the question asks about this speaker
            if skip_sources or skip_raw:
                srcs = json.loads(r["sources"])
                if skip_sources.intersection(srcs) or (r["kind"] == "raw" and skip_raw.intersection(srcs)):
                    continue
            live[r["rid"]] = r
        if not live:
            return []
        sims: dict[int, float] = {}
        vrows: list[Any] = []
        mat = np.zeros((0, DIM), dtype=np.float32)
        if qvec is not None:
            # exact scores for every vector of every candidate, best per channel
            marks = ",".join("?" * len(live))
            vrows = c.execute(f"SELECT memory, channel, vec FROM memory_vectors WHERE memory IN ({marks})", list(live)).fetchall()
            if vrows:
                mat = np.frombuffer(b"".join(r[2] for r in vrows), dtype=np.float32).reshape(len(vrows), -1)
                cos = mat @ qvec
                best: dict[str, dict[int, float]] = {ch: {} for ch in CHANNELS}
                for (mem, channel, _), score in zip(vrows, cos.tolist()):
                    d = best[channel]
                    if score > d.get(mem, -2.0):
                        d[mem] = score
                for channel, name in zip(CHANNELS, ("vector", "before", "after", "sentence")):
                    lists[name] = sorted(best[channel], key=best[channel].get, reverse=True)  # type: ignore[arg-type]
                sims = best["text"]
        lists["recency"] = sorted(live, key=lambda rid: live[rid]["created_at"], reverse=True)
        scores: dict[int, float] = {}
        why: dict[int, dict[str, int]] = {}

        def fuse(names: Iterable[str]) -> None:
            for name in names:
                weight = getattr(w, name)
                if weight <= 0:
                    continue
                rank = 0
                for rid in lists[name]:
                    if rid not in live:
                        continue
                    rank += 1
                    scores[rid] = scores.get(rid, 0.0) + weight / (w.k + rank)
                    if name != "recency":
                        why.setdefault(rid, {})[name] = rank

        fuse(list(lists))
        for rid in scores:
            r = live[rid]
            if spans and any(a <= r["created_at"] <= b for a, b in spans):
                scores[rid] += w.date
                why.setdefault(rid, {})["date"] = 1
            if asks_when and when.says_when(r["text"]):
                scores[rid] += w.when
                why.setdefault(rid, {})["when"] = 1
        best_first = sorted(scores, key=lambda rid: (scores[rid], live[rid]["created_at"]), reverse=True)
        if qvec is not None and sims and w.feedback > 0 and w.feedback_top > 0:
            # second round: the query moved towards what the first round found best
            top = set(best_first[: w.feedback_top])
            rows_top = [i for i, r in enumerate(vrows) if r[0] in top and r[1] == "text"]
            if rows_top:
                q2 = qvec + w.feedback_mix * mat[rows_top].mean(axis=0)
                q2 /= max(float(np.linalg.norm(q2)), 1e-9)
                fb: dict[int, float] = {}
                for (mem, channel, _), score in zip(vrows, (mat @ q2).tolist()):
                    if channel in ("text", "sentence") and score > fb.get(mem, -2.0):
                        fb[mem] = score
                lists["feedback"] = sorted(fb, key=fb.get, reverse=True)  # type: ignore[arg-type]
                fuse(["feedback"])
                best_first = sorted(scores, key=lambda rid: (scores[rid], live[rid]["created_at"]), reverse=True)
        out = []
        for rid in best_first[:limit]:
            m = _row(live[rid])
            m.score = scores[rid]
            m.similarity = sims.get(rid, 0.0)
            m.why = why.get(rid, {})
            out.append(m)
        return out

    # -- forgetting and exporting ------------------------------------------------
    async def forget(self, memory_id: str, *, user_id: str) -> list[str]:
        """Forget a memory and every copy derived from it (``memory.forget.Eraser``); returns what was deleted."""
        from shoal.memory.forget import Eraser

        return (await Eraser(self.db, self).forget_memory(memory_id, user_id=user_id)).deleted

    async def decline(self, conversation_id: str, pending_ids: list[str]) -> None:
        """The person said no to these pending facts: what the question showed of them leaves the journal."""
        from shoal.memory.forget import Eraser

        await Eraser(self.db, self).decline(conversation_id, pending_ids)

    async def export(self, user_id: str) -> list[dict[str, Any]]:
        """Every memory of the user (history included) with the messages it came from."""
        rows = await self.db.read(
            lambda c: c.execute("SELECT * FROM memories WHERE user_id = ? ORDER BY id", (user_id,)).fetchall()
        )
        out = []
        for r in rows:
            m = _row(r)
            d = m.as_dict()
            del d["score"]
            src = await self.db.read(
                lambda c, ids=m.sources: c.execute(
                    f"SELECT id, role, content, created_at FROM messages WHERE id IN ({','.join('?' * len(ids))})", ids
                ).fetchall()
                if ids
                else []
            )
            d["source_messages"] = [dict(s) for s in src]
            out.append(d)
        return out

    # -- pending facts (consent = "ask") ------------------------------------------
    async def propose(
        self,
        user_id: str,
        conversation_id: str,
        facts: Sequence[Any],
        *,
        sources: list[str],
        bot: str | None,
        note: str | None = None,
    ) -> list[dict[str, Any]]:
        """Keep ``facts`` (and the raw ``note`` of their message) waiting for the user's consent."""
        t = time.time()
        rows = [
            {
                "id": new_id(), "user_id": user_id, "conversation_id": conversation_id, "attribute": f.attribute,
                "value": f.value, "text": f.text, "sources": json.dumps(sources), "method": f.method, "bot": bot,
                "created_at": t, "kind": "fact",
            }
            for f in facts
        ]
        if note is not None:
            rows.append(
                {
                    "id": new_id(), "user_id": user_id, "conversation_id": conversation_id, "attribute": "", "value": "",
                    "text": note, "sources": json.dumps(sources), "method": "message", "bot": bot, "created_at": t,
                    "kind": "raw",
                }
            )

        def fn(c: Conn) -> None:
            c.executemany(
                "INSERT INTO memory_pending (id, user_id, conversation_id, attribute, value, text, sources, method, bot,"
                " created_at, kind) VALUES (:id, :user_id, :conversation_id, :attribute, :value, :text, :sources, :method,"
                " :bot, :created_at, :kind)",
                rows,
            )

        await self.db.write(fn)
        return rows

    async def pending(self, conversation_id: str) -> list[dict[str, Any]]:
        rows = await self.db.read(
            lambda c: c.execute(
                "SELECT * FROM memory_pending WHERE conversation_id = ? ORDER BY id", (conversation_id,)
            ).fetchall()
        )
        return [dict(r) for r in rows]

    async def settle_pending(self, ids: Sequence[str], *, approve: bool) -> list[tuple[Memory, Memory | None]]:
        """Store (approve) or drop the pending facts and notes; either way they leave the pending table."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = await self.db.read(lambda c: c.execute(f"SELECT * FROM memory_pending WHERE id IN ({marks})", list(ids)).fetchall())
        stored: list[tuple[Memory, Memory | None]] = []
        if approve and rows:
            items = []
            clauses: dict[tuple[str, str], NewMemory] = {}
            for r in rows:
                if r["kind"] == "fact" and (r["text"], r["sources"]) in clauses:
                    clauses[(r["text"], r["sources"])].facts.append((r["attribute"], r["value"]))
                    continue
                if r["kind"] == "raw":
                    previous = await self.latest_raw(r["user_id"], r["conversation_id"]) if r["conversation_id"] else None
                    items.append(
                        NewMemory(
                            r["user_id"], "raw", r["text"], sources=json.loads(r["sources"]), method="message (consented)",
                            bot=r["bot"], conversation_id=r["conversation_id"] or None,
                            before=previous.text if previous else None, previous=previous.id if previous else None,
                        )
                    )
                else:
                    fact = NewMemory(
                        r["user_id"], "fact", r["text"], r["attribute"], r["value"], json.loads(r["sources"]),
                        r["method"] + " (consented)", r["bot"], r["conversation_id"], facts=[(r["attribute"], r["value"])],
                    )
                    clauses[(r["text"], r["sources"])] = fact
                    items.append(fact)
            stored = await self.add_many(items)
        await self.db.write(lambda c: c.execute(f"DELETE FROM memory_pending WHERE id IN ({marks})", list(ids)))
        return stored
