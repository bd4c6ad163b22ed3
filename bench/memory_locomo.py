"""LoCoMo evidence recall for shoal's memory, against a BM25-over-turns baseline.

Each LoCoMo conversation is fed turn by turn into shoal's memory pipeline
(the same ``shoal.memory.pipeline.ingest`` the memory bot runs: a raw note
per turn, grounded facts by rules and — with ``--llm`` — by the embedded
model). Then, for every question of categories 1-4, the store is searched
and evidence recall@k is computed, where k is a budget of source turns: an
item covering several turns spends that many of the k, so bigger items
cannot inflate recall. The same figures for a plain BM25 over the turns are
computed in the same run.

    .venv/bin/python bench/memory_locomo.py                       # all 10 conversations, no LLM
    .venv/bin/python bench/memory_locomo.py --conversations 2 --llm   # with LLM fact extraction
    .venv/bin/python bench/memory_locomo.py --questions 40        # a quick subset
    .venv/bin/python bench/memory_locomo.py --ablate sentence     # also: recall without that signal

``--ablate NAME`` (repeatable) searches every question a second time on the
same store with the fusion weight NAME (a field of
``shoal.memory.store.Weights``, e.g. feedback, keyword_context, sentence) set
to 0, and reports ``ablate_NAME_recall@10`` and per category: what the
signal earns.

Data: ../shared/bench/locomo/locomo10.json (CC BY-NC 4.0, evaluation only).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "bench" / "locomo" / "locomo10.json"
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
console = Console(stderr=True)


# ---------------------------------------------------------------- data
def turns_of(sample: dict[str, Any]) -> list[dict[str, Any]]:
    conv = sample["conversation"]
    out = []
    sessions = sorted(
        (int(m.group(1)), k) for k in conv if (m := re.fullmatch(r"session_(\d+)", k)) and isinstance(conv[k], list)
    )
    for n, key in sessions:
        when = parse_date(conv.get(f"session_{n}_date_time", ""))
        for t in conv[key]:
            text = t["text"]
            if t.get("blip_caption"):
                text += f" [shares {t['blip_caption']}]"
            out.append({"id": t["dia_id"], "speaker": t["speaker"], "text": text, "when": when})
    return out


def parse_date(s: str) -> float | None:
    try:
        return datetime.strptime(s.strip(), "%I:%M %p on %d %B, %Y").timestamp()
    except ValueError:
        return None


def normalise_evidence(raw: list[str], known: set[str]) -> list[str]:
    """Split lists, fix malformed ids ('D:11:26', 'D30:05'), drop ids that do not exist."""
    out = []
    for item in raw:
        for part in re.split(r"[;,\s]+", item.strip()):
            m = re.fullmatch(r"D:?(\d+):0*(\d+)", part)
            if not m:
                continue
            ref = f"D{int(m.group(1))}:{int(m.group(2))}"
            if ref in known and ref not in out:
                out.append(ref)
    return out


def questions_of(sample: dict[str, Any], known: set[str]) -> list[dict[str, Any]]:
    qs = []
    for q in sample["qa"]:
        if q.get("category") not in CATEGORIES:
            continue
        ev = normalise_evidence(q.get("evidence", []), known)
        if ev:
            qs.append({"question": q["question"], "evidence": ev, "category": q["category"]})
    return qs


# ---------------------------------------------------------------- scoring
def recall_at(ranked_sources: list[list[str]], evidence: list[str], k: int) -> float:
    """Share of evidence covered by the top items within a budget of k source turns."""
    budget, covered = k, set()
    for sources in ranked_sources:
        cost = len(sources)
        if cost > budget:
            continue
        budget -= cost
        covered.update(sources)
        if budget == 0:
            break
    return len(covered & set(evidence)) / len(evidence)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))] if values else float("nan")


# ---------------------------------------------------------------- BM25 baseline
TOKEN = re.compile(r"[a-z0-9]+")
EN_STOP = frozenset(
    "a an and are as at be but by for from has have he her his i in is it its me my of on or our she so that the "
    "their them they this to was we were what when where which who why will with you your did do does how".split()
)


def tokens(text: str) -> list[str]:
    return [w for w in TOKEN.findall(text.lower()) if w not in EN_STOP]


class BM25:
    def __init__(self, docs: list[list[str]], k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.docs = [Counter(d) for d in docs]
        self.lens = [len(d) for d in docs]
        self.avg = sum(self.lens) / max(1, len(docs))
        df: Counter[str] = Counter()
        for d in self.docs:
            df.update(d.keys())
        n = len(docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def rank(self, query: list[str], top: int) -> list[int]:
        scores = []
        for i, d in enumerate(self.docs):
            s = 0.0
            for t in query:
                f = d.get(t)
                if f:
                    s += self.idf[t] * f * (self.k1 + 1) / (f + self.k1 * (1 - self.b + self.b * self.lens[i] / self.avg))
            if s > 0:
                scores.append((s, i))
        scores.sort(reverse=True)
        return [i for _, i in scores[:top]]


# ---------------------------------------------------------------- shoal
async def run(args: argparse.Namespace) -> dict[str, Any]:
    from shoal.memory.pipeline import ModelExtractor, ingest
    from shoal.memory.store import MemoryStore
    from shoal.store.conversations import ConversationStore
    from shoal.store.db import Database

    samples = json.loads(Path(args.data).read_text())
    if args.sample:
        samples = [s for s in samples if s["sample_id"] in args.sample]
    samples = samples[: args.conversations]
    work = []
    for s in samples:
        turns = turns_of(s)
        qs = questions_of(s, {t["id"] for t in turns})
        if args.questions:
            qs = qs[: args.questions]
        work.append((s["sample_id"], turns, qs))
    n_turns = sum(len(t) for _, t, _ in work)
    n_questions = sum(len(q) for _, _, q in work)

    tmp = tempfile.TemporaryDirectory(prefix="shoal-locomo-")
    db = await Database(Path(tmp.name) / "locomo.db").open()
    store = MemoryStore(db)
    conversations = ConversationStore(db)
    extractor = None
    backend = None
    if args.llm:
        from shoal.backends.embedded import EmbeddedBackend

        backend = EmbeddedBackend("bench")
        extractor = ModelExtractor(backend, max_tokens=128)
    console.print("loading the embedding model…")
    await store.embedder.warm_up()

    ingest_ms: list[float] = []
    search_ms: list[float] = []
    per_q: list[dict[str, Any]] = []
    facts = 0
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        t_ingest = progress.add_task("ingest turns", total=n_turns)
        t_search = progress.add_task("questions", total=n_questions)
        for sample_id, turns, qs in work:
            user = await conversations.ensure_user(sample_id)
            prev = None  # the previous turn's raw note: each note is indexed with its neighbours
            for t in turns:
                t0 = time.perf_counter()
                out = await ingest(
                    store,
                    user_id=user.id,
                    conversation_id=None,
                    message_id=t["id"],
                    text=t["text"],
                    speaker=t["speaker"],
                    previous=prev,
                    created_at=t["when"],
                    extractor=extractor,
                )
                ingest_ms.append((time.perf_counter() - t0) * 1000)
                facts += len(out.facts)
                prev = out.raw
                progress.advance(t_ingest)
            # BM25 over this conversation's turns
            bm25 = BM25([tokens(f"{t['speaker']}: {t['text']}") for t in turns])
            for q in qs:
                t0 = time.perf_counter()
                found = await store.search(user.id, q["question"], limit=args.pool)
                search_ms.append((time.perf_counter() - t0) * 1000)
                shoal_sources = [m.sources for m in found]
                base_sources = [[turns[i]["id"]] for i in bm25.rank(tokens(q["question"]), args.pool)]
                row = {"category": q["category"]}
                for k in (5, 10):
                    row[f"recall@{k}"] = recall_at(shoal_sources, q["evidence"], k)
                    row[f"bm25_recall@{k}"] = recall_at(base_sources, q["evidence"], k)
                for name in args.ablate or ():
                    w = dataclasses.replace(store.weights, **{name: 0})
                    off = await store.search(user.id, q["question"], limit=args.pool, weights=w)
                    row[f"ablate_{name}_recall@10"] = recall_at([m.sources for m in off], q["evidence"], 10)
                per_q.append(row)
                progress.advance(t_search)
    await db.close()
    if backend is not None:
        await backend.aclose()
    tmp.cleanup()
    return {
        "per_q": per_q,
        "ingest_ms": ingest_ms,
        "search_ms": search_ms,
        "turns": n_turns,
        "questions": n_questions,
        "facts": facts,
        "conversations": len(work),
        "llm": bool(args.llm),
        "invalid_llm_outputs": extractor.invalid if extractor else 0,
        "ablate": list(args.ablate or ()),
    }


def report(r: dict[str, Any]) -> dict[str, Any]:
    per_q = r["per_q"]

    def mean(rows: list[dict[str, Any]], key: str) -> float:
        return sum(x[key] for x in rows) / len(rows) if rows else float("nan")

    table = Table(title=f"LoCoMo evidence recall — {r['conversations']} conversation(s), {r['questions']} questions"
                  f"{', LLM extraction' if r['llm'] else ', no LLM extraction'}")
    for col in ("category", "n", "shoal @5", "shoal @10", "BM25 @5", "BM25 @10"):
        table.add_column(col, justify="right" if col != "category" else "left")
    by_cat: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in per_q:
        by_cat[row["category"]].append(row)
    for cat, name in CATEGORIES.items():
        rows = by_cat.get(cat, [])
        table.add_row(
            f"{cat} {name}", str(len(rows)), *(f"{mean(rows, k):.3f}" for k in ("recall@5", "recall@10", "bm25_recall@5", "bm25_recall@10"))
        )
    table.add_row("overall (1-4)", str(len(per_q)), *(f"{mean(per_q, k):.3f}" for k in ("recall@5", "recall@10", "bm25_recall@5", "bm25_recall@10")), style="bold")
    console.print(table)
    console.print(
        f"ingest: {r['turns']} turns, {r['facts']} facts, {pct(r['ingest_ms'], 50):.1f} ms p50 per turn; "
        f"search p50 {pct(r['search_ms'], 50):.1f} ms, p95 {pct(r['search_ms'], 95):.1f} ms"
        + (f"; invalid LLM outputs {r['invalid_llm_outputs']}" if r["llm"] else "")
    )
    figures: dict[str, Any] = {
        "recall@5": round(mean(per_q, "recall@5"), 4),
        "recall@10": round(mean(per_q, "recall@10"), 4),
        "bm25_recall@5": round(mean(per_q, "bm25_recall@5"), 4),
        "bm25_recall@10": round(mean(per_q, "bm25_recall@10"), 4),
    }
    for cat in CATEGORIES:
        figures[f"cat{cat}_recall@10"] = round(mean(by_cat.get(cat, []), "recall@10"), 4)
    for name in r["ablate"]:
        key = f"ablate_{name}_recall@10"
        figures[key] = round(mean(per_q, key), 4)
        for cat in CATEGORIES:
            figures[f"ablate_{name}_cat{cat}_recall@10"] = round(mean(by_cat.get(cat, []), key), 4)
    figures["vs_bm25_recall@10"] = round(figures["recall@10"] / max(figures["bm25_recall@10"], 1e-9), 3)
    figures["ingest_ms_per_turn"] = round(sum(r["ingest_ms"]) / max(1, len(r["ingest_ms"])), 2)
    figures["search_p50_ms"] = round(pct(r["search_ms"], 50), 2)
    figures["search_p95_ms"] = round(pct(r["search_ms"], 95), 2)
    figures["llm_extraction"] = int(r["llm"])
    figures["questions"] = r["questions"]
    return figures


def main() -> None:
    p = argparse.ArgumentParser(description="LoCoMo evidence recall for shoal's memory vs BM25 over turns.")
    p.add_argument("--data", default=str(DATA), help="path of locomo10.json")
    p.add_argument("--conversations", type=int, default=10, help="use the first N conversations")
    p.add_argument("--sample", action="append", help="only this sample id (repeatable), e.g. conv-26")
    p.add_argument("--questions", type=int, default=0, help="at most N questions per conversation (0: all)")
    p.add_argument("--llm", action="store_true", help="also extract facts with the embedded model (slow: ~1 s a turn)")
    p.add_argument("--pool", type=int, default=30, help="items fetched per question before the budget is applied")
    p.add_argument("--ablate", action="append", metavar="NAME",
                   help="also search with this fusion weight (a Weights field, e.g. feedback) at 0; repeatable")
    args = p.parse_args()
    from shoal.memory.store import Weights

    for name in args.ablate or ():
        if name not in {f.name for f in dataclasses.fields(Weights)} or name in ("k", "feedback_top"):
            p.error(f"--ablate: {name!r} is not a fusion weight (one of: "
                    f"{', '.join(f.name for f in dataclasses.fields(Weights) if f.name not in ('k', 'feedback_top', 'feedback_mix'))})")
    if not Path(args.data).exists():
        sys.exit(f"error: {args.data} not found (the LoCoMo data lives in ../shared/bench/locomo/)")
    result = asyncio.run(run(args))
    figures = report(result)
    print(" ".join(f"{k}: {v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
