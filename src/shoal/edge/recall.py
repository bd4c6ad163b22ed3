"""Recall at the hub: edge observations and facts for a chat, by node, place and time, within grants.

"What happened in the garage last night?" names a node (by its name, its
``location`` words or its site) and a time ("last night" = 18:00 yesterday
to 08:00 today, hub time). Recall returns that node's observations in that
window — and its current facts when no window is named — best first, each
with its provenance: the node, the entry's seq, the readings it cites, when
and how confident. A question naming no node but a time ("anything unusual
last night?") looks at every node the user may see; otherwise only a
keyword match brings a node's note in. Only nodes granted to the user are
ever read (hubstore.HubStore.visible): bob never sees ana's garage.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from typing import Any

from shoal.edge.hubstore import HubStore, NodeRow
from shoal.store.conversations import User
from shoal.store.db import Database

_HAPPEN = re.compile(r"\b(what|anything|any|did|was there|were there|happen\w*|going on|unusual|notice\w*|see|seen)\b", re.I)
_STOP = frozenset("the a an in on at of to and or was were is are what did does happen happened last night today "
                  "yesterday this morning evening afternoon week there any anything my me i you how".split())


def window(text: str, now: float | None = None) -> tuple[float, float] | None:
    """The time a question names, as (since, until) Unix seconds on the hub's clock, or None."""
    now = time.time() if now is None else now
    t = text.lower()
    today = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)

    def at(day_offset: int, hour: int) -> float:
        return (today + timedelta(days=day_offset, hours=hour)).timestamp()

    m = re.search(r"\b(?:in |over |during )?(?:the )?(?:last|past) (\d+|an?|one|few) (minute|hour|day)s?\b", t)
    if m:
        n = {"a": 1, "an": 1, "one": 1, "few": 3}.get(m.group(1)) or int(m.group(1))
        unit = {"minute": 60, "hour": 3600, "day": 86400}[m.group(2)]
        return now - n * unit, now
    if "last night" in t:
        return at(-1, 18), min(now, at(0, 8))
    if "tonight" in t:
        return at(0, 18), now
    if "this morning" in t:
        return at(0, 5), min(now, at(0, 12))
    if "this afternoon" in t:
        return at(0, 12), min(now, at(0, 18))
    if "this evening" in t:
        return at(0, 18), now
    if "yesterday" in t:
        return at(-1, 0), at(0, 0)
    if re.search(r"\btoday\b", t):
        return at(0, 0), now
    if "last week" in t:
        return now - 14 * 86400, now - 7 * 86400
    if "this week" in t:
        return now - 7 * 86400, now
    if re.search(r"\b(recently|lately)\b", t):
        return now - 86400, now
    return None


def mentioned(text: str, nodes: list[NodeRow]) -> list[NodeRow]:
    """Nodes the text names by name, location or site."""
    t = " " + re.sub(r"[^a-z0-9]+", " ", text.lower()) + " "
    out = []
    for n in nodes:
        names = {n.name.lower().replace("_", " ").replace("-", " ")}
        if n.location:
            names.add(re.sub(r"[^a-z0-9]+", " ", n.location.lower()).strip())
        if n.site:
            names.add(n.site.lower())
        if any(name and f" {name} " in t for name in names):
            out.append(n)
    return out


async def recall(db: Database, edge_config: Any, user: User, text: str, *, limit: int = 5, now: float | None = None) -> list[dict[str, Any]]:
    """Notes for ``text`` that ``user`` may see, best first (dicts from hubstore.note_dict, with ``why``)."""
    store = HubStore(db)
    visible = await store.visible(user, edge_config.hub.grants)
    if not visible:
        return []
    nodes = [n for n in await store.nodes() if n.name in visible]
    named = mentioned(text, nodes)
    span = window(text, now)
    picked: list[dict[str, Any]] = []
    if named or (span and _HAPPEN.search(text)):
        names = [n.name for n in (named or nodes)]
        if span:
            since, until = span
            obs = await store.notes(names, kinds=("observation",), since_ms=int(since * 1000), until_ms=int(until * 1000), limit=200)
            # the strongest first: a quiet night's one motion event matters more than ten routine readings
            obs.sort(key=lambda n: (-(n["confidence"] or 0), -n["time"]))
            picked += [{**n, "why": "named node and time" if named else "time"} for n in obs[:limit]]
            if not picked and named:
                picked += [{**n, "why": "named node (nothing noted in that time)"}
                           for n in await store.notes(names, kinds=("fact",), limit=limit)]
        else:
            picked += [{**n, "why": "named node"} for n in await store.notes(names, kinds=("observation",), limit=limit)]
            picked += [{**n, "why": "named node"} for n in await store.notes(names, kinds=("fact",), limit=2)]
    # the rest by content words; a node's own name or place matches all of its notes, so it is no keyword
    places = {w for n in nodes for w in re.findall(r"[a-z0-9]+", f"{n.name} {n.location} {n.site}".lower())}
    words = [w for w in re.findall(r"[a-z0-9]{4,}", text.lower()) if w not in _STOP and w not in places]
    if len(picked) < limit and words:
        seen = {(p["node"], p["seq"]) for p in picked}
        for hit in await store.search_notes([n.name for n in (named or nodes)], " ".join(words), limit=limit):
            inside = span is None or span[0] <= hit["time"] < span[1]
            if inside and (hit["node"], hit["seq"]) not in seen:
                picked.append({**hit, "why": "keywords"})
    return picked[:limit]


def as_memory_item(note: dict[str, Any]) -> dict[str, Any]:
    """A note as the fields of a MemoryItem (runtime.messages), provenance included: the node's scope,
    when, how confident, and the sources (the note's entry, then the readings it cites).
    The conversation bot's ``render_memory`` says it as what it is ("Observed by node garage …")."""
    src = [f"edge:{note['node']}:{note['seq']}"] + [f"edge:{note['node']}:{c[0]}" for c in note.get("cites", [])[:10]]
    verb = "learned" if note["kind"] == "fact" else "observed"
    return {
        "id": f"edge:{note['node']}:{note['seq']}",
        "kind": "fact" if note["kind"] == "fact" else "observation",
        "text": note["text"],
        "scope": f"node:{note['node']}",
        "created_at": note["time"],
        "confidence": note.get("confidence"),
        "attribute": f"edge:{note['node']}",
        "value": note.get("sensor"),
        "sources": src,
        "method": f"edge node {note['node']}: {note.get('method') or verb}, {note.get('why', '')}".strip(", "),
    }


async def recall_items(db: Database, config: Any, user_id: str, text: str, *, limit: int = 3) -> list[Any]:
    """For the memory bot's recall: MemoryItems of the user's granted nodes ([] unless the hub is on)."""
    if not getattr(config, "edge", None) or not config.edge.hub.enabled or not text:
        return []
    from shoal.runtime.messages import MemoryItem

    row = await db.read(lambda c: c.execute("SELECT id, name, is_admin, created_at FROM users WHERE id = ?", (user_id,)).fetchone())
    if row is None:
        return []
    user = User(row["id"], row["name"], bool(row["is_admin"]), row["created_at"])
    notes = await recall(db, config.edge, user, text, limit=limit)
    return [MemoryItem(**as_memory_item(n)) for n in notes]
