"""How often the small model writes a valid tool call: constrained (shoal's way) against free output (the baseline).

Runs on demand (not in CI): `python bench/tool_calls.py [--prompts N]`. The
same prompts, tools and model go through ``tools.calling.choose`` twice, with
the grammar and without it; a call counts as valid when it names an offered
tool and its arguments pass the tool's JSON schema (what reaches a tool).
Also checks that a calculator call computes the right number.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter

from rich.progress import Progress

from shoal.backends.embedded import EmbeddedBackend
from shoal.config import EngineConfig
from shoal.tools.builtin import evaluate
from shoal.tools.calling import choose
from shoal.tools.config import ToolsConfig
from shoal.tools.registry import build_registry
from shoal.types import ChatMessage

PROMPTS = [
    ("What is 17 times 23?", "calculator", 391), ("How much is 1200 divided by 16?", "calculator", 75),
    ("Calculate 45 + 78.", "calculator", 123), ("What is 2 to the power of 10?", "calculator", 1024),
    ("What time is it in Lisbon?", "time", None), ("What day is it today?", "time", None),
    ("What is 99 minus 43?", "calculator", 56), ("Compute 12 * 12 * 12.", "calculator", 1728),
    ("What is the date today in Tokyo?", "time", None), ("What is 7 times 8?", "calculator", 56),
]


async def run(n: int) -> dict[str, float]:
    backend = EmbeddedBackend("local", engine=EngineConfig(max_sequences=4, context=2048))
    await backend.start()
    tools = build_registry(ToolsConfig(plugins=False)).tools(["calculator", "time"])
    prompts = (PROMPTS * (n // len(PROMPTS) + 1))[:n]
    out: dict[str, float] = {}
    try:
        for mode, constrain in (("unconstrained", False), ("constrained", True)):
            counts: Counter[str] = Counter()
            right = 0
            t0 = time.perf_counter()
            with Progress() as progress:
                task = progress.add_task(f"{mode} tool calls", total=len(prompts))
                for text, want, value in prompts:
                    choice = await choose(backend, tools, [ChatMessage("user", text)], constrain=constrain,
                                          allow_none=False, stats=counts, retries=0)
                    if choice is not None and choice.tool == want and value is not None:
                        try:
                            right += int(abs(float(evaluate(choice.arguments["expression"])) - value) < 1e-9)
                        except Exception:
                            pass
                    elif choice is not None and choice.tool == want:
                        right += 1
                    progress.advance(task)
            seconds = time.perf_counter() - t0
            out[f"valid_{mode}"] = counts["chosen"] / len(prompts)
            out[f"right_{mode}"] = right / len(prompts)
            out[f"seconds_per_call_{mode}"] = seconds / len(prompts)
    finally:
        await backend.aclose()
    out["prompts"] = len(prompts)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=10)
    figures = asyncio.run(run(parser.parse_args().prompts))
    print(" ".join(f"{k}: {v:.3g}" if isinstance(v, float) else f"{k}: {v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
