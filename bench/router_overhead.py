"""Router overhead: the latency shoal's cluster adds to one streamed request.

An upstream that does no inference (bench/upstream.py, its own process on
loopback) streams 16 short tokens per request. The same requests, at a fixed
rate (open loop: each starts on schedule whether or not earlier ones have
finished, so a slow path cannot hide its queueing), go

- **direct**: through shoal's own HTTP backend straight to the upstream —
  the baseline, measured in the same run;
- **shoal**: through ``Cluster.stream`` (two members on the same upstream,
  default strategy): queue, admission, routing, failover bookkeeping and the
  wrapper stream on top of the same backend;
- **litellm**: through LiteLLM's ``Router.acompletion(stream=True)``, when
  ``litellm`` is installed (it is not a shoal dependency).

Latency = scheduled start to last token. Modes alternate in rounds so drift
(other load on the machine) hits all of them alike.

    .venv/bin/python bench/router_overhead.py                    # 50 req/s, 8 rounds x 75 per mode
    .venv/bin/python bench/router_overhead.py --rate 100 --per-round 300
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time
from contextlib import aclosing
from pathlib import Path
from typing import Any, Awaitable, Callable

from _stack import free_port, start_upstream, stop
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from shoal.backends.openai_http import OpenAIHTTPBackend  # noqa: E402
from shoal.cluster import Cluster  # noqa: E402
from shoal.config import parse_config  # noqa: E402
from shoal.types import ChatMessage, GenerateRequest, SamplingParams  # noqa: E402

console = Console(stderr=True)
MESSAGES = [{"role": "user", "content": "Say something."}]
TOKENS = 16


def request() -> GenerateRequest:
    return GenerateRequest(
        messages=[ChatMessage("user", MESSAGES[0]["content"])],
        model="bench",
        sampling=SamplingParams(max_tokens=64, temperature=0.0),
    )


async def drain(stream: Any) -> int:
    n = 0
    async with aclosing(stream) as chunks:
        async for chunk in chunks:
            n += 1 if chunk.text else 0
    return n


Mode = Callable[[], Awaitable[int]]
Step = Callable[[], Awaitable[Any]]


def make_modes(url: str) -> tuple[dict[str, Mode], list[Step], list[Step]]:
    """The request paths to compare, what to start before and what to close after."""
    direct = OpenAIHTTPBackend("direct", url, kind="openai")
    cfg = parse_config(
        f"""
[[servers]]
name = "up1"
kind = "openai"
url = "{url}"
models = ["bench"]
max_concurrent = 512

[[servers]]
name = "up2"
kind = "openai"
url = "{url}"
models = ["bench"]
max_concurrent = 512

[cluster]
health_interval = 0
reload_interval = 0
max_queue = 4096
""",
        "<bench>",
    )
    cluster = Cluster(cfg)
    modes: dict[str, Mode] = {
        "direct": lambda: drain(direct.stream(request())),
        "shoal": lambda: drain(cluster.stream(request())),
    }
    starters: list[Step] = [cluster.start]
    closers: list[Step] = [direct.aclose, cluster.stop]
    try:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        os.environ.setdefault("LITELLM_LOG", "ERROR")
        import litellm
        from litellm import Router

        litellm.suppress_debug_info = True
        logging.getLogger("LiteLLM").setLevel(logging.ERROR)
        router = Router(
            model_list=[
                {"model_name": "bench", "litellm_params": {"model": "openai/bench", "api_base": url + "/v1", "api_key": "x"}}
            ]
        )

        async def via_litellm() -> int:
            n = 0
            resp = await router.acompletion(model="bench", messages=MESSAGES, stream=True, max_tokens=64, temperature=0.0)
            async for chunk in resp:
                if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
                    n += 1
            return n

        modes["litellm"] = via_litellm
    except ImportError:
        console.print("[yellow]litellm is not installed: comparing shoal with the direct call only[/]")
    return modes, starters, closers


async def run_block(fn: Mode, n: int, rate: float, progress: Progress, task: Any) -> list[float]:
    """``n`` requests started on a fixed schedule; latency from the scheduled start to the last token."""
    latencies: list[float] = []
    errors = 0

    async def one(at: float) -> None:
        nonlocal errors
        try:
            tokens = await fn()
            if tokens != TOKENS:
                errors += 1
        except Exception:
            errors += 1
        latencies.append(time.perf_counter() - at)
        progress.advance(task)

    t0 = time.perf_counter() + 0.01
    tasks = []
    for i in range(n):
        at = t0 + i / rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(at)))
    await asyncio.gather(*tasks)
    if errors:
        raise SystemExit(f"{errors} of {n} requests failed or came back short")
    return latencies


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, round(p / 100 * (len(xs) - 1))))
    return xs[k] * 1000


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=50.0, help="requests per second, per mode")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--per-round", type=int, default=75, help="requests per mode per round")
    ap.add_argument("--warmup", type=int, default=50)
    a = ap.parse_args()

    port = free_port()
    upstream = start_upstream(port, TOKENS)
    url = f"http://127.0.0.1:{port}"
    modes, starters, closers = make_modes(url)
    for start in starters:
        await start()
    results: dict[str, list[float]] = {m: [] for m in modes}
    try:
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        ) as progress:
            warm = progress.add_task("warm-up", total=a.warmup * len(modes))
            for name, fn in modes.items():
                await run_block(fn, a.warmup, a.rate, progress, warm)
            tasks = {m: progress.add_task(f"{m:8s} @ {a.rate:g}/s", total=a.rounds * a.per_round) for m in modes}
            for r in range(a.rounds):
                order = list(modes) if r % 2 == 0 else list(reversed(modes))
                for name in order:
                    results[name] += await run_block(modes[name], a.per_round, a.rate, progress, tasks[name])
    finally:
        for close in closers:
            await close()
        stop([upstream], timeout=10)

    table = Table(title=f"streamed request latency, {TOKENS} tokens, {a.rate:g} req/s, {a.rounds * a.per_round} per mode (ms)")
    for col in ("path", "p50", "p95", "p99", "mean", "p50 vs direct"):
        table.add_column(col, justify="right" if col != "path" else "left")
    base = pct(results["direct"], 50)
    stats: dict[str, float] = {}
    for name, xs in sorted(results.items(), key=lambda kv: ["shoal", "direct", "litellm"].index(kv[0])):
        p50, p95, p99 = pct(xs, 50), pct(xs, 95), pct(xs, 99)
        stats.update({f"{name}_p50_ms": p50, f"{name}_p95_ms": p95, f"{name}_p99_ms": p99})
        table.add_row(name, f"{p50:.2f}", f"{p95:.2f}", f"{p99:.2f}", f"{statistics.fmean(xs) * 1000:.2f}", f"{p50 / base:.2f}x")
    console.print(table)
    stats["shoal_overhead_p50_ms"] = stats["shoal_p50_ms"] - stats["direct_p50_ms"]
    stats["shoal_overhead_p99_ms"] = stats["shoal_p99_ms"] - stats["direct_p99_ms"]
    stats["shoal_vs_direct_p50"] = stats["shoal_p50_ms"] / stats["direct_p50_ms"]
    if "litellm" in results:
        stats["litellm_overhead_p50_ms"] = stats["litellm_p50_ms"] - stats["direct_p50_ms"]
        stats["litellm_vs_direct_p50"] = stats["litellm_p50_ms"] / stats["direct_p50_ms"]
    console.print(
        f"shoal adds {stats['shoal_overhead_p50_ms']:.2f} ms at the median"
        + (f"; LiteLLM Router adds {stats['litellm_overhead_p50_ms']:.2f} ms" if "litellm" in results else "")
    )
    print(" ".join(f"{k}: {v:.3f}" for k, v in stats.items()))


if __name__ == "__main__":
    asyncio.run(main())
