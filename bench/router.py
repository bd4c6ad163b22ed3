"""The local-first router's decision: how often it sends a turn where it belongs, and what a decision costs.

The turns are ``bench/data/router_turns.jsonl``, written by hand (not from
templates), each labelled *simple* (small talk, thanks, statements about
oneself, short look-ups, one-line definitions: the small local model copes)
or *complex* (code, maths, multi-step reasoning, planning, comparisons,
writing at length, several questions at once: a bigger model should answer).
Some carry the person's previous turn ("why?" after a hard question).
Three parts:

- ``dev`` (60) — written first; the classifier's features were tuned on it;
- ``dev2`` (45) — written with ``dev``, scored once before tuning (see
  docs/cluster.md), then tuned on too;
- ``held-out`` (34) — written after tuning stopped; never tuned on.

Baselines in the same run: the primary's ``when = "long"`` rule (12 words
or more: complex), and the default routing rules (question, plan or long)
taken as "complex". Cost: CPU time per decision of ``complexity.assess``
and of ``LocalFirst.choose`` over a real (unstarted) cluster, against the
``long`` rule's, over every turn many times (CPU-time figures hold on a busy
machine; wall-clock ones would not).

    .venv/bin/python bench/router.py            # figures, the misses, and a last line of name: value pairs
    .venv/bin/python bench/router.py --repeat 2000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from shoal.bots.primary import rule_matches  # noqa: E402
from shoal.cluster.complexity import assess  # noqa: E402
from shoal.config import RoutingRule, parse_config  # noqa: E402

DATA = ROOT / "bench" / "data" / "router_turns.jsonl"
Turn = dict[str, str]


def load(path: Path = DATA) -> list[Turn]:
    turns = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for t in turns:
        if t.get("label") not in ("simple", "complex") or not t.get("text"):
            raise SystemExit(f"{path}: every turn needs a text and a label simple|complex: {t}")
    return turns


def scores(turns: list[Turn], is_complex: Callable[[Turn], bool]) -> dict[str, float]:
    tp = fp = fn = tn = 0
    for t in turns:
        said, truth = is_complex(t), t["label"] == "complex"
        tp += said and truth
        fp += said and not truth
        fn += truth and not said
        tn += not said and not truth
    return {
        "accuracy": (tp + tn) / len(turns),
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
    }


LONG = RoutingRule(name="long", when="long", min_words=12, send=["x"])
DEFAULT_RULES = [RoutingRule(name=w, when=w, send=["x"]) for w in ("question", "plan", "long")]  # type: ignore[arg-type]

CLASSIFIERS: dict[str, Callable[[Turn], bool]] = {
    "local_first": lambda t: assess(t["text"], t.get("previous", "")).complex,
    "long_rule": lambda t: rule_matches(LONG, t["text"]),
    "default_rules": lambda t: any(rule_matches(r, t["text"]) for r in DEFAULT_RULES),
}


def cpu_us(fn: Callable[[], object], n: int) -> float:
    """CPU microseconds per call of ``fn`` (best of three runs of ``n``)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, time.process_time() - t0)
    return best / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=200, help="passes over every turn for the cost figures")
    args = ap.parse_args()
    out = Console(width=140)
    turns = load()
    parts = {"all": turns} | {p: [t for t in turns if t["split"] == p] for p in ("dev", "dev2", "held-out")}

    table = Table(title=f"complex vs simple on {len(turns)} hand-labelled turns "
                        f"({sum(t['label'] == 'complex' for t in turns)} complex)")
    table.add_column("classifier")
    for p, ts in parts.items():
        table.add_column(f"{p} ({len(ts)}): acc / P / R", justify="right")
    figures: dict[str, dict[str, dict[str, float]]] = {}
    for name, fn in CLASSIFIERS.items():
        figures[name] = {p: scores(ts, fn) for p, ts in parts.items()}
        table.add_row(name, *(f"{f['accuracy']:.2f} / {f['precision']:.2f} / {f['recall']:.2f}" for f in figures[name].values()))
    out.print(table)
    out.print("[dim]P / R: precision and recall of 'complex'[/]")

    misses = [t for t in turns if CLASSIFIERS["local_first"](t) != (t["label"] == "complex")]
    for t in misses:
        a = assess(t["text"], t.get("previous", ""))
        out.print(f"  miss ({t['split']}): labelled {t['label']}, scored {a.score:g} {a.reasons}: {t['text'][:90]!r}")

    # the cost of deciding: the classifier alone, and the whole choice over a real cluster's views
    from shoal.cluster.core import Cluster
    from shoal.cluster.local_first import LocalFirst
    from shoal.runtime.swarm import ClusterViews

    cfg = parse_config(
        '[[servers]]\nname = "local"\nkind = "embedded"\n[[servers]]\nname = "big"\nkind = "openai"\n'
        'url = "http://127.0.0.1:9"\n[cluster]\nhealth_interval = 0\n[routing.local_first]\nlocal = "local"\nbig = "big"\n'
    )
    assert cfg.routing.local_first is not None
    router = LocalFirst(cfg.routing.local_first, ClusterViews(Cluster(cfg)))  # never started: nothing is loaded or called
    texts = [(t["text"], t.get("previous", "")) for t in turns]

    def passes(fn: Callable[[str, str], object]) -> float:
        def all_turns() -> None:
            for text, prev in texts:
                fn(text, prev)

        return cpu_us(all_turns, args.repeat) / len(texts)

    assess_us = passes(lambda text, prev: assess(text, prev))
    choose_us = passes(lambda text, prev: router.choose(text, prev))
    long_us = passes(lambda text, prev: rule_matches(LONG, text))
    out.print(
        f"cost per turn (CPU time, best of 3 x {args.repeat} passes): assess {assess_us:.1f} µs, "
        f"choose {choose_us:.1f} µs (with the cluster's health view), long rule {long_us:.2f} µs "
        f"({assess_us / long_us:.0f}x the long rule)"
    )
    lf, held = figures["local_first"], figures["local_first"]["held-out"]
    pairs = {
        "turns": len(turns),
        "accuracy": f"{lf['all']['accuracy']:.3f}",
        "precision_complex": f"{lf['all']['precision']:.3f}",
        "recall_complex": f"{lf['all']['recall']:.3f}",
        "heldout_accuracy": f"{held['accuracy']:.3f}",
        "heldout_precision_complex": f"{held['precision']:.3f}",
        "heldout_recall_complex": f"{held['recall']:.3f}",
        "long_rule_accuracy": f"{figures['long_rule']['all']['accuracy']:.3f}",
        "default_rules_accuracy": f"{figures['default_rules']['all']['accuracy']:.3f}",
        "decide_us": f"{choose_us:.1f}",
        "assess_us": f"{assess_us:.1f}",
        "long_rule_us": f"{long_us:.2f}",
    }
    print(" ".join(f"{k}: {v}" for k, v in pairs.items()))


if __name__ == "__main__":
    main()
