"""Websocket load: many concurrent sessions chatting through `shoal up`.

Starts `shoal up` (a real server process) in a temporary SHOAL_HOME with all
bots pointed at bench/upstream.py — a stub OpenAI-compatible server that
streams canned tokens without inference, *the cheapest backend this bench can
run*, so the figures measure shoal's server, mesh, journal and websocket
fan-out, not a model. Then N websocket clients (one conversation each) send
turns one after another, waiting for each reply to finish.

Fan-out latency = time from an event's creation by a bot (its ``ts``) to its
arrival at the client. Baseline, in the same run: the same workload with a
single session.

    .venv/bin/python bench/ws_load.py                 # 200 sessions x 3 turns
    .venv/bin/python bench/ws_load.py --sessions 20 --turns 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import websockets
from _stack import free_port, start_upstream, stop, stub_swarm
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console(stderr=True)

SERVER = """
[server]
login_attempts_per_minute = 1000

# 200 people at once ask for ~800 generations in the same second: the cluster
# queues them all (its default of 256 waiting requests would refuse the rest)
[cluster]
max_queue = 4096
"""
#: the stub answers instantly and is not what is measured: it takes as many at once as come
STUB = ""


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


class Stack:
    """The stub upstream and `shoal up`, as separate processes."""

    def __init__(self, tokens: int) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="shoal-wsload-")
        self.home = Path(self.tmp.name)
        self.up_port = free_port()
        self.port = free_port()
        (self.home / "shoal.toml").write_text(stub_swarm(self.up_port, server=STUB) + SERVER)
        self.env = {**os.environ, "SHOAL_HOME": str(self.home), "COLUMNS": "200"}
        self.upstream = start_upstream(self.up_port, tokens)
        self.server = subprocess.Popen(
            [sys.executable, *(["-m", "cProfile", "-o", os.environ["WS_LOAD_PROFILE"]] if os.environ.get("WS_LOAD_PROFILE") else []),
             "-m", "shoal", "up", "--port", str(self.port)],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        out = ""
        deadline = time.monotonic() + 120
        assert self.server.stdout is not None
        while "password:" not in out and time.monotonic() < deadline:
            line = self.server.stdout.readline()
            if not line:
                raise RuntimeError(f"shoal up exited:\n{out}")
            out += line
        self.password = re.search(r"password:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{self.port}"
        with httpx.Client(base_url=self.url) as c:
            r = c.post("/api/auth/login", json={"name": "admin", "password": self.password})
            r.raise_for_status()
            self.token = c.post("/api/tokens", json={"name": "bench"}, cookies=r.cookies).json()["token"]
            # measure the steady state: the server loads the embedding model at start (seconds of CPU)
            while c.get("/healthz").json().get("embedder") == "loading" and time.monotonic() < deadline + 120:
                time.sleep(0.5)

    def close(self) -> None:
        stop([self.server, self.upstream], signal.SIGINT)
        if self.server.stdout:
            self.server.stdout.close()
        self.tmp.cleanup()


async def session(stack: Stack, turns: int, stats: dict[str, Any], progress: Progress, task: Any) -> None:
    headers = {"Authorization": f"Bearer {stack.token}"}
    try:
        async with httpx.AsyncClient(base_url=stack.url, headers=headers, timeout=60) as http:
            conv = (await http.post("/api/conversations", json={})).json()["id"]
        async with websockets.connect(f"ws://127.0.0.1:{stack.port}/ws", additional_headers=headers, max_size=2**22, open_timeout=60, compression=None) as ws:
            await ws.recv()  # welcome
            await ws.send(json.dumps({"type": "subscribe", "conversation": conv}))
            # everyone is connected before anyone chats: the figures are about chatting, not about 200
            # people signing in within the same second (--storm measures that too)
            stats["ready"] += 1
            if stats["ready"] == stats["sessions"]:
                stats["all_in"].set()
            if not stats["storm"]:
                await stats["all_in"].wait()
            for t in range(turns):
                sent = time.time()
                await ws.send(json.dumps({"type": "send", "conversation": conv, "text": f"Question {t}: how are you?"}))
                turn = None
                settled = replied = False
                while not (settled and replied):
                    f = json.loads(await asyncio.wait_for(ws.recv(), 120))
                    now = time.time()
                    if f["type"] == "error":
                        stats["errors"] += 1
                        return
                    if f["type"] == "ack":
                        turn = f["message_id"]
                    if f["type"] != "event":
                        continue
                    stats["fanout_ms"].append((now - f["ts"]) * 1000)
                    stats["by_turn"].setdefault(t, []).append((now - f["ts"]) * 1000)
                    stats["events"] += 1
                    # a bot that failed (the cluster refused, a server died) is an error too
                    if f["kind"] == "bot.error" or (f["kind"] == "reply.end" and f.get("status") == "error"):
                        stats["errors"] += 1
                        stats["failures"].append(f"{f['kind']}: {f.get('error') or f.get('status')}"[:300])
                    if f.get("turn") == turn and f["kind"] == "reply.end" and not f.get("interjection"):
                        replied = True
                        stats["turn_ms"].append((now - sent) * 1000)
                    if f.get("turn") == turn and f["kind"] == "turn.settled":
                        settled = True
                        stats["settle_ms"].append((now - sent) * 1000)
                progress.advance(task)
    except Exception as exc:  # a failed session is counted, not fatal
        stats["ready"] += 1
        if stats["ready"] >= stats["sessions"]:
            stats["all_in"].set()
        stats["errors"] += 1
        stats["failures"].append(f"{type(exc).__name__}: {exc}")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used: robust to other load on the machine, unlike latency."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(stack: Stack, sessions: int, turns: int, label: str, storm: bool = False) -> dict[str, Any]:
    stats: dict[str, Any] = {
        "fanout_ms": [], "by_turn": {}, "turn_ms": [], "settle_ms": [], "events": 0, "errors": 0, "failures": [],
        "ready": 0, "sessions": sessions, "all_in": asyncio.Event(), "storm": storm,
    }
    with Progress(TextColumn(f"[bold]{label}[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task(label, total=sessions * turns)
        t0, cpu0 = time.monotonic(), cpu_seconds(stack.server.pid)
        await asyncio.gather(*(session(stack, turns, stats, progress, task) for _ in range(sessions)))
        stats["seconds"] = time.monotonic() - t0
        stats["server_cpu_s"] = cpu_seconds(stack.server.pid) - cpu0
    return stats


def main() -> None:
    p = argparse.ArgumentParser(description="Websocket load through `shoal up` with a stub model.")
    p.add_argument("--sessions", type=int, default=200)
    p.add_argument("--turns", type=int, default=3, help="turns per session, one after another")
    p.add_argument("--tokens", type=int, default=16, help="tokens the stub streams per reply")
    p.add_argument("--storm", action="store_true", help="each session chats as soon as it is connected (sign-in storm and chat together)")
    a = p.parse_args()
    console.print(
        "[yellow]model replaced[/] by bench/upstream.py, a stub OpenAI-compatible server that streams "
        f"{a.tokens} canned tokens without inference: figures measure shoal, not a model."
    )
    stack = Stack(a.tokens)
    try:
        base = asyncio.run(run(stack, 1, a.turns, "baseline: 1 session"))
        load = asyncio.run(run(stack, a.sessions, a.turns, f"{a.sessions} sessions", a.storm))
    finally:
        stack.close()
    table = Table("run", "sessions", "turns", "events", "errors", "fan-out p50 ms", "fan-out p99 ms", "turn p50 ms", "turn p99 ms", "events/s")
    for label, n, s in (("baseline", 1, base), ("load", a.sessions, load)):
        table.add_row(
            label, str(n), str(len(s["turn_ms"])), str(s["events"]), str(s["errors"]),
            f"{pct(s['fanout_ms'], 50):.1f}", f"{pct(s['fanout_ms'], 99):.1f}",
            f"{pct(s['turn_ms'], 50):.0f}", f"{pct(s['turn_ms'], 99):.0f}", f"{s['events'] / s['seconds']:.0f}",
        )
    console.print(table)
    console.print("fan-out p99 by turn: " + ", ".join(f"turn {t + 1}: {pct(v, 99):.0f} ms" for t, v in sorted(load["by_turn"].items())))
    console.print(f"background settled: p50 {pct(load['settle_ms'], 50):.0f} ms, p99 {pct(load['settle_ms'], 99):.0f} ms")
    for f in load["failures"][:5]:
        console.print(f"[red]failure:[/] {f}")
    figures = {
        "sessions": a.sessions,
        "turns": len(load["turn_ms"]),
        "errors": load["errors"],
        "fanout_p50_ms": round(pct(load["fanout_ms"], 50), 2),
        "fanout_p99_ms": round(pct(load["fanout_ms"], 99), 2),
        "baseline_fanout_p99_ms": round(pct(base["fanout_ms"], 99), 2),
        "fanout_p99_vs_baseline": round(pct(load["fanout_ms"], 99) / max(pct(base["fanout_ms"], 99), 1e-9), 2),
        "turn_p50_ms": round(pct(load["turn_ms"], 50), 1),
        "events_per_s": round(load["events"] / load["seconds"], 1),
        # the server's CPU per user turn (connect + chat), the cost the fan-out latency grows with
        "server_cpu_ms_per_turn": round(1000 * load["server_cpu_s"] / max(1, len(load["turn_ms"])), 2),
    }
    print(" ".join(f"{k}: {v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
