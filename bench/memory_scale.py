"""Memory search latency at 10k, 100k and 1M memories in one user's scope.

Builds one user's memory store up to each size and times ``MemoryStore.search``
— the full hybrid search the swarm runs: query embedding, a hamming-distance
pass over the user's binary codes (in memory) with float32 re-scoring of
every candidate's vectors, two BM25 queries, recency, fusion. Baseline in the same run: exact
float32 KNN over the same vectors with sqlite-vec (no binary first pass, no
keywords).

Memories are real LoCoMo turns embedded with MiniLM, then, to reach a
million, copies of them with their vectors perturbed (so the vector space
keeps realistic clusters) and their texts shuffled from the same vocabulary:
latency depends on counts and distributions, not on meaning. Queries are
LoCoMo questions. Also reports the process's memory and the database size.

With ``--under-load`` every size is searched twice in the same run: on a quiet
machine, then while the embedded engine (the shipped SmolLM2, in this
process, as in the swarm) decodes a background generation without pause —
recall runs before every reply, beside the thinkers.

    .venv/bin/python bench/memory_scale.py                  # 10k, 100k, 1M
    .venv/bin/python bench/memory_scale.py --sizes 10000 100000 --queries 100
    .venv/bin/python bench/memory_scale.py --sizes 100000 --under-load --keep /tmp/scale100k.db
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from memory_locomo import DATA, turns_of

console = Console(stderr=True)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))]


CACHE = Path(__file__).resolve().parents[1] / ".cache" / "memory_scale"


class BackgroundDecode:
    """The embedded engine decoding thoughts back to back (THINKING priority) until stopped."""

    def __init__(self) -> None:
        self.tokens = 0
        self.seconds = 0.0
        self._stop = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from shoal.config import EngineConfig
        from shoal.engine import chat
        from shoal.engine.llama import Model, default_model_path
        from shoal.engine.scheduler import Engine
        from shoal.types import ChatMessage

        def load():  # type: ignore[no-untyped-def]
            model = Model(default_model_path())
            return model, Engine(model, EngineConfig(), name="bench-load")

        self.model, self.engine = await asyncio.to_thread(load)
        msgs = [ChatMessage(role="user", content="Write a long, detailed story about a lighthouse keeper and the sea.")]
        self.prompt = self.model.tokenize(chat.render(self.model.chat_template, msgs), add_special=True, parse_special=True)
        first = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._loop(first))
        await first  # decoding has begun

    async def _loop(self, first: "asyncio.Future[None]") -> None:
        from shoal.types import GenerateRequest, Priority, SamplingParams

        while not self._stop:
            req = GenerateRequest(messages=[], priority=Priority.THINKING, owner="bench",
                                  sampling=SamplingParams(max_tokens=512, temperature=0.8))
            t0 = time.perf_counter()
            async for chunk in self.engine.stream(req, self.prompt):
                if chunk.text and not first.done():
                    first.set_result(None)
                if chunk.finish_reason is not None:
                    self.tokens += chunk.completion_tokens or 0
            self.seconds += time.perf_counter() - t0

    async def stop(self) -> None:
        self._stop = True
        if self._task is not None:
            await self._task
        await asyncio.to_thread(self.engine.close)
        self.model.close()

    @property
    def tok_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def embedded_texts(embedder, texts: list[str]) -> np.ndarray:  # type: ignore[no-untyped-def]
    """MiniLM vectors of the base texts, cached under .cache/ (embedding 5,882 turns takes ~10 min on one core)."""
    import hashlib

    key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = CACHE / f"base-{key}.npy"
    if path.exists():
        return np.load(path)
    console.print(f"embedding {len(texts):,} base texts with MiniLM (once; cached in {path.parent})…")
    vecs = embedder.embed_sync(texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vecs)
    return vecs


async def main_async(args: argparse.Namespace) -> dict[str, float]:
    from shoal.memory.store import MemoryStore, NewMemory
    from shoal.store.conversations import ConversationStore
    from shoal.store.db import Database, now

    rng = np.random.default_rng(7)
    random.seed(7)
    samples = json.loads(DATA.read_text())
    texts = [f"{t['speaker']}: {t['text']}" for s in samples for t in turns_of(s)]
    questions = [q["question"] for s in samples for q in s["qa"] if q.get("category") in (1, 2, 3, 4)]
    random.shuffle(questions)
    questions = questions[: args.queries]
    vocab = sorted({w for t in texts for w in t.split()})

    tmp = tempfile.TemporaryDirectory(prefix="shoal-scale-", dir=args.dir)
    db_path = Path(args.keep) if args.keep else Path(tmp.name) / "scale.db"
    db = await Database(db_path).open()
    store = MemoryStore(db)
    user = await ConversationStore(db).ensure_user("scale")
    await db.write(
        lambda c: c.execute("CREATE VIRTUAL TABLE IF NOT EXISTS baseline USING vec0(emb float[384] distance_metric=cosine)")
    )
    # a kept database is extended, not rebuilt
    have = await store.count(user.id)
    sizes = sorted(args.sizes)
    if have:
        console.print(f"{db_path} already holds {have:,} memories; sizes below that are skipped")
        sizes = [n for n in sizes if n >= have]
    await store.embedder.warm_up()
    qvecs = await store.embedder.embed(questions)
    base = embedded_texts(store.embedder, texts) if sizes and sizes[-1] > have else None
    results: dict[int, dict[str, float]] = {}
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        for size in sizes:
            task = progress.add_task(f"build to {size:,}", total=size - have)
            while have < size:
                n = min(args.batch, size - have)
                items, vecs = [], []
                for i in range(have, have + n):
                    j = i % len(texts)
                    assert base is not None
                    if i < len(texts):
                        text, vec = texts[j], base[j]
                    else:
                        words = texts[j].split()
                        random.shuffle(words)
                        text = " ".join(words[:3] + random.sample(vocab, 2) + words[3:])
                        vec = base[j] + rng.normal(0, 0.04, 384).astype(np.float32)
                        vec /= np.linalg.norm(vec)
                    items.append(NewMemory(user.id, "raw", text, sources=[f"m{i}"], created_at=1.7e9 + i))
                    vecs.append(vec.astype(np.float32))

                def write(c, items=items, vecs=vecs):  # type: ignore[no-untyped-def]
                    t = now()
                    for it, v in zip(items, vecs):
                        store._insert(c, it, [("text", "self", None, v)], t)
                    c.executemany(
                        "INSERT INTO baseline (emb) VALUES (?)", [(v.tobytes(),) for v in vecs]
                    )

                await db.write(write)
                have += n
                progress.advance(task, n)
            # a database in use is checkpointed as it goes; right after a bulk build the WAL holds
            # hundreds of MB that every read would have to look through
            await db.checkpoint()
            qtask = progress.add_task(f"search at {size:,}", total=len(questions))
            shoal_ms, base_ms = [], []
            # the first search after a start (or after another process wrote) loads the user's
            # binary codes: timed apart, it is not a per-search cost
            store.index.forget_cache()
            t0 = time.perf_counter()
            await store.search(user.id, "warm up", limit=10)
            load_ms = (time.perf_counter() - t0) * 1000
            store.embedder._cache.clear()  # each search embeds its query, as in the swarm
            # shoal's searches first, then the baseline's: interleaved, the exact KNN's scan of
            # every float vector evicts the caches the other search would find warm in use
            for q in questions:
                t0 = time.perf_counter()
                await store.search(user.id, q, limit=10)
                shoal_ms.append((time.perf_counter() - t0) * 1000)
                progress.advance(qtask, 0.5)
            for qv in qvecs:
                t0 = time.perf_counter()
                await db.read(
                    lambda c, qv=qv: c.execute(
                        "SELECT rowid, distance FROM baseline WHERE emb MATCH ? AND k = 10", (qv.tobytes(),)
                    ).fetchall()
                )
                base_ms.append((time.perf_counter() - t0) * 1000)
                progress.advance(qtask, 0.5)
            load: dict[str, float] = {}
            if args.under_load:
                # the same questions again, now while the engine decodes beside the search
                bg = BackgroundDecode()
                await bg.start()
                store.embedder._cache.clear()
                busy_ms = []
                for q in questions:
                    t0 = time.perf_counter()
                    await store.search(user.id, q, limit=10)
                    busy_ms.append((time.perf_counter() - t0) * 1000)
                await bg.stop()
                load = {"load_p50": pct(busy_ms, 50), "load_p95": pct(busy_ms, 95), "bg_tok_s": bg.tok_s}
            size_mb = sum(f.stat().st_size for f in db_path.parent.glob(db_path.name + "*")) / 2**20
            results[size] = {
                "p50": pct(shoal_ms, 50), "p95": pct(shoal_ms, 95), "base_p50": pct(base_ms, 50),
                "base_p95": pct(base_ms, 95), "rss": rss_mb(), "db_mb": size_mb, "load_ms": load_ms, **load,
            }
    await db.close()
    tmp.cleanup()

    table = Table(title=f"memory search in one scope ({len(questions)} queries)")
    for col in ("memories", "shoal p50 ms", "shoal p95 ms", "exact KNN p50 ms", "exact KNN p95 ms", "process RSS MB", "database MB"):
        table.add_column(col, justify="right")
    for size, r in results.items():
        table.add_row(f"{size:,}", f"{r['p50']:.1f}", f"{r['p95']:.1f}", f"{r['base_p50']:.1f}", f"{r['base_p95']:.1f}",
                      f"{r['rss']:.0f}", f"{r['db_mb']:.0f}")
    console.print(table)
    figures: dict[str, float] = {}
    for size, r in results.items():
        tag = {10_000: "10k", 100_000: "100k", 1_000_000: "1m"}.get(size, str(size))
        figures[f"p50_ms_{tag}"] = round(r["p50"], 2)
        figures[f"p95_ms_{tag}"] = round(r["p95"], 2)
        figures[f"exact_p95_ms_{tag}"] = round(r["base_p95"], 2)
        figures[f"p95_vs_exact_{tag}"] = round(r["p95"] / r["base_p95"], 3)
        figures[f"rss_mb_{tag}"] = round(r["rss"])
        figures[f"first_search_ms_{tag}"] = round(r["load_ms"], 1)
        if "load_p95" in r:
            figures[f"p50_ms_{tag}_load"] = round(r["load_p50"], 2)
            figures[f"p95_ms_{tag}_load"] = round(r["load_p95"], 2)
            figures[f"bg_decode_tok_s_{tag}"] = round(r["bg_tok_s"], 1)
    return figures


def main() -> None:
    p = argparse.ArgumentParser(description="Memory search latency at scale, in one user's scope.")
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--batch", type=int, default=20_000, help="memories per write transaction while building")
    p.add_argument("--dir", default=os.environ.get("TMPDIR"), help="where the temporary database goes")
    p.add_argument("--under-load", action="store_true",
                   help="also search while the embedded engine decodes a background generation (same run)")
    p.add_argument("--keep", help="keep the database at this path (an existing one is extended and measured again)")
    figures = asyncio.run(main_async(p.parse_args()))
    print(" ".join(f"{k}: {v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
