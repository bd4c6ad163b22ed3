"""A thinker's µLM: turns the harness recognises are solved by search, and the verified answer is the thought.

``thought_for`` is what ``ThinkerBot.solver_for`` calls. It returns None (the
thinker thinks with its chat model as usual) unless ``[ulm]`` names a solver
run and this bot, the user's message holds a task a harness world can state
and check (an arithmetic expression, "sort 3 1 2", "reverse 4 5 6"), and one
of the µLM's samples passes the verifier. A small model's guess never reaches
the primary unchecked.
"""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from shoal.ulm.harness.base import Task, calculator, get_env

_EXPR = re.compile(r"(?<![\w.])(\d{1,3}(?:\s*[-+*x×]\s*\d{1,3}){1,2})(?![\w.])")
_LIST = re.compile(r"\b(sort|reverse)\b\D{0,20}((?:\d\s*,?\s*){3,8})")
_lock = threading.Lock()


def parse_turn(text: str) -> Task | None:
    """The harness task in a user's message, or None."""
    m = _LIST.search(text.lower())
    if m:
        items = re.findall(r"\d", m.group(2))
        if 3 <= len(items) <= 8:
            result = sorted(items) if m.group(1) == "sort" else items[::-1]
            answer = " ".join(result)
            return Task("lists", len(items) - 2, f"Q: {m.group(1)} {' '.join(items)}\n", answer, f"A: {answer}\n")
    m = _EXPR.search(text)
    if m:
        expr = re.sub(r"\s+", "", m.group(1)).replace("x", "*").replace("×", "*")
        answer = calculator(expr)
        if answer != "error":
            level = 4 if len(re.findall(r"[-+*]", expr)) > 1 else max(len(n) for n in re.findall(r"\d+", expr))
            return Task("arith", level, f"Q: {expr}\n", answer, f"<calc>{expr}</calc>={answer}\nA: {answer}\n")
    return None


@dataclass
class Solved:
    task: Task
    answer: str | None
    hits: int
    n: int
    trace: str


@lru_cache(maxsize=2)
def _load(run: str, home: str) -> Any:
    from shoal.ulm import checkpoint

    return checkpoint.load(checkpoint.resolve(Path(home), run))


def solve_task(run: str, home: Path, task: Task, *, n: int, temperature: float, max_new: int, threads: int = 1) -> Solved:
    """N samples of the µLM on ``task``, kept only if the verifier accepts them (blocking; run it in a thread)."""
    import torch

    from shoal.engine.cpu import BUDGET
    from shoal.ulm.search import rollout

    loaded = _load(run, str(home))
    env = get_env(task.env)
    with _lock, BUDGET.borrow(threads):
        torch.set_num_threads(threads)
        cands = rollout(loaded.model, loaded.tokenizer, [task.prompt] * n, temperature=temperature, max_new=max_new)
    good = [c for c in cands if env.verify(task, c.text).ok]
    return Solved(task, task.answer if good else None, len(good), n, good[0].text if good else "")


async def thought_for(config: Any, bot: str, text: str, home: Path | None = None) -> str | None:
    """The thought a µLM contributes to ``text`` for thinker ``bot``, or None to think as usual."""
    u = config.ulm
    if not u.solver_run or bot not in u.solver_bots:
        return None
    task = parse_turn(text)
    if task is None:
        return None
    if home is None:
        from shoal.config import Settings

        home = Settings().home
    res = await asyncio.to_thread(
        solve_task, u.solver_run, home, task, n=u.samples, temperature=u.temperature, max_new=u.max_new, threads=u.threads or 1
    )
    if res.answer is None:
        return None
    what = task.prompt[3:].strip()
    return (
        f"The µLM '{u.solver_run}' worked out {what} by search: the answer is {res.answer} "
        f"({res.hits} of {res.n} samples passed the harness verifier)."
    )
