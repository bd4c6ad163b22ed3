"""Searching the node's own observations and facts: keywords (FTS5) and meaning (MiniLM vectors).

Notes are embedded in the background, a few at a time, on the embedder's
single thread (torch held to one thread, DESIGN.md §4). A node without the
embedding model (or with ``edge.embed = false``) searches by keywords only.
Both rankings are fused by reciprocal rank, like the memory store does.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import numpy as np

from shoal.edge.journal import Journal
from shoal.edge.sync import sleep_or_stop

log = logging.getLogger(__name__)

K = 60  # reciprocal-rank constant


class NoteIndex:
    def __init__(self, journal: Journal, *, embedder: Any = None) -> None:
        self.journal = journal
        self._embedder = embedder
        self.available = True
        self.embedded = 0

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from shoal.memory.embed import shared_embedder

            self._embedder = shared_embedder()
        return self._embedder

    async def embed_pending(self, limit: int = 64) -> int:
        """Embed notes that have no vector yet; returns how many."""
        if not self.available:
            return 0
        rows = await self.journal.db.read(
            lambda c: c.execute("SELECT seq, text FROM notes WHERE vec IS NULL ORDER BY seq LIMIT ?", (limit,)).fetchall()
        )
        if not rows:
            return 0
        try:
            vecs = await self.embedder.embed([r[1] for r in rows])
        except Exception as exc:  # no torch / no model package: keywords still work
            self.available = False
            log.warning("observations are searched by keywords only: the embedding model did not load (%s)", exc)
            return 0
        await self.journal.write(lambda c: c.executemany(
            "UPDATE notes SET vec = ? WHERE seq = ?", [(v.astype(np.float32).tobytes(), r[0]) for r, v in zip(rows, vecs)]))
        self.embedded += len(rows)
        return len(rows)

    async def run(self, stop: asyncio.Event) -> None:
        while not await sleep_or_stop(stop, 10.0):
            try:
                while await self.embed_pending():
                    pass
            except Exception:
                log.debug("embedding notes failed", exc_info=True)

    async def search(self, query: str, limit: int = 10) -> list[dict[str, Any]]:
        """Notes ranked for ``query``: each with seq, kind, text, confidence, time and why it was found."""
        words = [w for w in re.findall(r"[A-Za-z0-9]+", query.lower()) if len(w) > 2]
        ranks: dict[int, dict[str, int]] = {}
        if words:
            match = " OR ".join(f'"{w}"' for w in words)
            hits = await self.journal.db.read(lambda c: c.execute(
                "SELECT rowid FROM notes_fts WHERE notes_fts MATCH ? ORDER BY bm25(notes_fts) LIMIT 50", (match,)).fetchall())
            for i, (seq,) in enumerate(hits):
                ranks.setdefault(seq, {})["keyword"] = i + 1
        if self.available:
            try:
                await self.embed_pending(256)
                q = (await self.embedder.embed([query]))[0]
                rows = await self.journal.db.read(
                    lambda c: c.execute("SELECT seq, vec FROM notes WHERE vec IS NOT NULL").fetchall())
                if rows:
                    m = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
                    sims = m @ q
                    for i, idx in enumerate(np.argsort(-sims)[:50].tolist()):
                        ranks.setdefault(rows[idx][0], {})["vector"] = i + 1
            except Exception as exc:
                log.info("vector search skipped: %s", exc)
        scored = sorted(ranks.items(), key=lambda kv: -sum(1 / (K + r) for r in kv[1].values()))[:limit]
        out = []
        for seq, why in scored:
            r = await self.journal.db.read(lambda c, s=seq: c.execute(
                "SELECT seq, kind, hlc, sensor, text, confidence, superseded_by FROM notes WHERE seq = ?", (s,)).fetchone())
            if r is not None:
                out.append({"seq": r[0], "kind": r[1], "time": (r[2] >> 16) / 1000.0, "sensor": r[3], "text": r[4],
                            "confidence": r[5], "superseded": r[6] is not None, "why": why})
        return out
