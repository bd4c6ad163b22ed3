"""Which repetition controls keep the shipped model from looping? Measured, not guessed.

Prompts that make SmolLM2-135M repeat itself (lists, recipes, counting) are
answered by the conversation bot's prompt on the embedded engine under
several sampling settings — llama.cpp's repeat penalty, presence penalty and
DRY — and each reply is checked with the reply guard's loop check. The
setting with the fewest loops (then the most distinct words) is the default
in shoal.toml; the baseline is the settings before issue 12 (repeat penalty
1.1 only).

    .venv/bin/python bench/sampling.py --seeds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import time
from typing import Any

from rich.console import Console
from rich.table import Table

os.environ.setdefault("HF_HUB_OFFLINE", "1")
console = Console(stderr=True)

PROMPTS = [
    "Give me a shopping list for spaghetti bolognese.",
    "List ten fruits.",
    "What are the ingredients for pancakes?",
    "Tell me three tips for sleeping better.",
    "Write the days of the week.",
    "What should I pack for a weekend of camping?",
    "Name some famous painters.",
    "How do I make a cup of tea?",
]
INSTRUCTION = "You are shoal, a friendly and concise assistant. Answer in one to three sentences."

SETTINGS: dict[str, dict[str, float]] = {
    "baseline (repeat 1.1)": {"repeat_penalty": 1.1},
    "repeat 1.3": {"repeat_penalty": 1.3},
    "presence 0.6": {"repeat_penalty": 1.1, "presence_penalty": 0.6},
    "dry 0.8": {"repeat_penalty": 1.1, "dry_multiplier": 0.8},
    "dry 0.8 + presence 0.3": {"repeat_penalty": 1.1, "dry_multiplier": 0.8, "presence_penalty": 0.3},
}


async def run(seeds: int, max_tokens: int, temperature: float) -> dict[str, dict[str, Any]]:
    from shoal.backends.base import generate
    from shoal.backends.embedded import EmbeddedBackend
    from shoal.bots.guards import ReplyGuard
    from shoal.types import ChatMessage, GenerateRequest, SamplingParams

    backend = EmbeddedBackend("local")
    out: dict[str, dict[str, Any]] = {}
    try:
        for name, knobs in SETTINGS.items():
            loops = distinct = words = n = 0
            t0 = time.perf_counter()
            for seed in range(seeds):
                for prompt in PROMPTS:
                    req = GenerateRequest(
                        messages=[ChatMessage("system", INSTRUCTION), ChatMessage("user", prompt)],
                        sampling=SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed, **knobs),  # type: ignore[arg-type]
                    )
                    text = (await generate(backend, req)).text
                    ws = re.findall(r"\w+", text.lower())
                    loops += ReplyGuard.loop(text) is not None
                    distinct += len(set(ws))
                    words += len(ws)
                    n += 1
            out[name] = {
                "loop_rate": loops / n, "distinct_ratio": distinct / max(words, 1), "words": words / n,
                "seconds": time.perf_counter() - t0,
            }
            console.print(f"{name}: {out[name]}")
    finally:
        await backend.aclose()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=160)
    p.add_argument("--temperature", type=float, default=0.7, help="the conversation bot's default")
    a = p.parse_args()
    res = asyncio.run(run(a.seeds, a.max_tokens, a.temperature))
    table = Table("setting", "loop rate", "distinct words", "words / reply")
    for name, r in res.items():
        table.add_row(name, f"{r['loop_rate']:.3f}", f"{r['distinct_ratio']:.3f}", f"{r['words']:.0f}")
    console.print(table)
    base = res["baseline (repeat 1.1)"]
    best = min(res, key=lambda k: (res[k]["loop_rate"], -res[k]["distinct_ratio"]))
    figures = {
        "baseline_loop_rate": round(base["loop_rate"], 3),
        **{re.sub(r"\W+", "_", k).strip("_") + "_loop_rate": round(v["loop_rate"], 3) for k, v in res.items() if v is not base},
        "best": re.sub(r"\W+", "_", best).strip("_"),
        "best_loop_rate": round(res[best]["loop_rate"], 3),
        "replies_per_setting": a.seeds * len(PROMPTS),
    }
    print(" ".join(f"{k}: {v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
