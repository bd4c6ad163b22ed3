"""The cost of the NATS hop: user turn -> settled, in-process vs NATS with one and two workers.

Same workload, same run, three ways:

* ``inprocess`` — every bot in this process on the in-process mesh (baseline);
* ``nats1`` — the server here on ``[mesh] kind = "nats"``, thinker + memory in
  one ``shoal worker`` subprocess (a real nats-server with JetStream in a
  temp dir on a free loopback port);
* ``nats2`` — the same with two workers sharing thinker + memory (each turn
  must be thought about exactly once).

Every bot's model is bench/upstream.py, a stub OpenAI-compatible server
that streams canned tokens without inference, so the figures are the mesh,
the data service and the journal — not a model (which would add seconds of
noise on a shared CPU). A turn counts as an error when it does not settle,
its reply is not complete, a bot is missing, or it is not thought about
exactly once.

    .venv/bin/python bench/mesh_nats.py               # 30 turns per mode
    .venv/bin/python bench/mesh_nats.py --turns 10
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from _stack import ROOT, STUB_SERVER, child_env, free_port, start_nats, start_upstream, stop, stub_swarm
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(ROOT / "src"))
console = Console(stderr=True)

MEMORY = """
[memory]
extract_with_model = false
"""

MESH = """
[mesh]
kind = "nats"
url = "{url}"
remote = ["thinker", "memory"]
"""

TEXTS = [
    "Hi! My name is Sam and I live in Bristol.",
    "What should I cook tonight? I like pasta.",
    "I work as a nurse and I have a cat called Pip.",
    "Can you suggest a book for a rainy day?",
    "My sister lives in Paris and I visit her in May.",
]


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))]


def nats_msgs(monitor: int) -> int:
    """Messages every client has sent the NATS server so far (its /varz: publishes, requests, replies, acks)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/varz", timeout=5) as r:
        return int(json.load(r)["in_msgs"])


#: the steps of a turn, in the order they happen, for the timeline (ms after the user turn, median over turns)
STEPS = ("route", "thought.start", "reply.start", "memory.done", "reply.end", "thought.end", "turn.settled")


def timeline(events: list[dict[str, Any]]) -> dict[str, float]:
    """When each step of a turn happened, ms after its user turn (median over the turns; ``ts`` is the emitter's clock)."""
    starts = {e["turn"]: e["ts"] for e in events if e["kind"] == "user.turn"}
    seen: dict[tuple[str, str], float] = {}
    for e in events:
        if e.get("turn") in starts and e["kind"] in STEPS and not e.get("interjection"):
            seen.setdefault((e["turn"], e["kind"]), (e["ts"] - starts[e["turn"]]) * 1000)
    return {k: statistics.median(v) for k in STEPS if (v := [ms for (_, kind), ms in seen.items() if kind == k])}


async def run_mode(mode: str, base: Path, upstream: int, nats_url: str, turns: int, monitor: int) -> dict[str, Any]:
    from shoal.config import Env, Settings, parse_config
    from shoal.runtime.swarm import Swarm

    home = base / mode
    home.mkdir(parents=True)
    base = home.parent
    toml = stub_swarm(upstream, "settle_timeout = 20") + MEMORY + (MESH.format(url=nats_url) if mode != "inprocess" else "")
    (home / "shoal.toml").write_text(toml)
    env = Env(Settings(home=home), parse_config(toml))
    workers: list[subprocess.Popen[bytes]] = []
    out: dict[str, Any] = {"mode": mode, "turn_ms": [], "errors": 0, "events": 0, "seconds": 0.0, "failures": []}
    async with Swarm(env) as swarm:
        await swarm.warm_up()
        n_workers = {"inprocess": 0, "nats1": 1, "nats2": 2}[mode]
        for i in range(n_workers):
            whome = base / f"{mode}-worker{i}"
            whome.mkdir()
            (whome / "shoal.toml").write_text(STUB_SERVER.format(upstream=upstream, extra=""))
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "shoal", "worker", "--bots", "thinker,memory", "--nats", nats_url],
                env=child_env(whome), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
        if n_workers:
            deadline = time.monotonic() + 120
            while len(swarm.host.registry.alive("thinker")) < n_workers:
                if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                    raise RuntimeError(f"{mode}: the workers did not join")
                await asyncio.sleep(0.2)
        user = await swarm.local_user()
        conv = await swarm.conversations.create_conversation(user.id)
        for _ in range(3):  # warm every path
            await swarm.run_turn(conv.id, user.id, "Hello there.", timeout=60)
        seq0 = len(await swarm.conversations.events_since(conv.id, 0))
        host = getattr(swarm, "host", None)
        calls0 = collections.Counter(host.data.calls) if host else collections.Counter()
        published0 = host.mesh.published if host else 0
        msgs0 = nats_msgs(monitor) if host else 0
        t0 = time.monotonic()
        with Progress(TextColumn(f"{mode:9}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task(mode, total=turns)
            for i in range(turns):
                r = await swarm.run_turn(conv.id, user.id, TEXTS[i % len(TEXTS)], timeout=60)
                out["turn_ms"].append(r.seconds * 1000)
                thought = [t for t in r.thoughts if t["status"] == "done"]
                bad = [why for ok, why in (
                    (r.settled, "not settled"), (r.reply_status == "complete", f"reply {r.reply_status}"),
                    (not r.missing, f"missing {r.missing}"), (len(thought) == 1, f"{len(thought)} thoughts"),
                    (r.seconds < 19.5, f"open for {r.seconds:.0f} s (a timed-out wait or an interjection that never came)"),
                ) if not ok]
                if bad:
                    out["errors"] += 1
                    out["failures"].append(f"{mode} turn {i}: {', '.join(bad)}")
                bar.advance(task)
        out["seconds"] = time.monotonic() - t0
        if host:  # round trips and messages per turn: robust where latency is not (a busy machine)
            calls = collections.Counter(host.data.calls)
            calls.subtract(calls0)
            out["data_calls"] = {k: v / turns for k, v in sorted(calls.items()) if v}
            out["server_published"] = (host.mesh.published - published0) / turns
            out["nats_msgs"] = (nats_msgs(monitor) - msgs0) / turns
        await asyncio.sleep(0.5)
        events = (await swarm.conversations.events_since(conv.id, 0))[seq0:]
        out["events"] = len(events)
        out["timeline"] = timeline(events)
        out["memories"] = await swarm.memories.count(user.id)
        if n_workers == 2:
            out["split"] = [len(w.bots) for w in swarm.host.registry.workers.values()]
        stop(workers)
    return out


async def amain(a: argparse.Namespace) -> None:
    base = Path(tempfile.mkdtemp(prefix="shoal-mesh-bench-"))
    up_port, nats_port, monitor = free_port(), free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(start_upstream(up_port, a.tokens))
        procs.append(start_nats(base / "nats", nats_port, monitor=monitor))
        url = f"nats://127.0.0.1:{nats_port}"
        # the first swarm of a process pays for warming torch and the embedder: an unmeasured round first
        await run_mode("inprocess", base / "warm-up", up_port, url, max(3, a.turns // 3), monitor)
        results = [await run_mode(m, base, up_port, url, a.turns, monitor) for m in a.modes.split(",")]
        results.sort(key=lambda r: ["inprocess", "nats1", "nats2"].index(r["mode"]))
    finally:
        stop(procs[::-1], timeout=10)
        shutil.rmtree(base, ignore_errors=True)
    table = Table(title=f"user turn -> settled, {a.turns} turns per mode (stub model, {a.tokens} tokens per reply)")
    for col in ("mode", "p50 ms", "p90 ms", "mean ms", "events/s", "memories", "errors"):
        table.add_column(col)
    for r in results:
        table.add_row(
            r["mode"], f"{pct(r['turn_ms'], 50):.1f}", f"{pct(r['turn_ms'], 90):.1f}", f"{statistics.mean(r['turn_ms']):.1f}",
            f"{r['events'] / r['seconds']:.0f}", str(r["memories"]), str(r["errors"]),
        )
    console.print(table)
    for r in results:
        for f in r["failures"][:5]:
            console.print(f"[red]{f}[/]")
    steps = Table(title="when each step of a turn happens: ms after the user turn (median)")
    steps.add_column("mode")
    for k in STEPS:
        steps.add_column(k)
    for r in results:
        steps.add_row(r["mode"], *(f"{r['timeline'].get(k, float('nan')):.1f}" for k in STEPS))
    console.print(steps)
    for r in results[1:]:
        per = ", ".join(f"{k} {v:.1f}" for k, v in r["data_calls"].items())
        console.print(f"{r['mode']}: per turn {sum(r['data_calls'].values()):.1f} data-service calls ({per}); "
                      f"{r['server_published']:.1f} messages published by the server; {r['nats_msgs']:.1f} NATS messages in all")
    base_p50 = pct(results[0]["turn_ms"], 50)
    figures = {
        "turns": a.turns,
        "inprocess_turn_p50_ms": round(base_p50, 1),
        "nats_turn_p50_ms": round(pct(results[1]["turn_ms"], 50), 1),
        "nats2_turn_p50_ms": round(pct(results[2]["turn_ms"], 50), 1),
        "nats_vs_inprocess_turn_p50": round(pct(results[1]["turn_ms"], 50) / base_p50, 2),
        "nats2_vs_inprocess_turn_p50": round(pct(results[2]["turn_ms"], 50) / base_p50, 2),
        "inprocess_events_per_s": round(results[0]["events"] / results[0]["seconds"], 1),
        "nats_events_per_s": round(results[1]["events"] / results[1]["seconds"], 1),
        "nats2_events_per_s": round(results[2]["events"] / results[2]["seconds"], 1),
        "nats_data_calls_per_turn": round(sum(results[1]["data_calls"].values()), 1),
        "nats_msgs_per_turn": round(results[1]["nats_msgs"], 1),
        "nats2_msgs_per_turn": round(results[2]["nats_msgs"], 1),
        "errors": sum(r["errors"] for r in results),
    }
    print(" ".join(f"{k}: {v}" for k, v in figures.items()))


def main() -> None:
    p = argparse.ArgumentParser(description="Turn latency in-process vs over NATS with one and two workers.")
    p.add_argument("--turns", type=int, default=30)
    p.add_argument("--tokens", type=int, default=16, help="tokens the stub streams per reply")
    p.add_argument("--modes", default="inprocess,nats1,nats2", help="the order to run them in (all three are needed)")
    asyncio.run(amain(p.parse_args()))


if __name__ == "__main__":
    main()
