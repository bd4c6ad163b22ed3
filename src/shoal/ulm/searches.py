"""One swarm search, kept to be looked at: N samples of a µLM on one task, each with the verifier's verdict.

The web UI's µLM view asks for a search on a run (a held-out task of a
world, or a task stated in words: "sort 3 1 2", "12*34") and shows the
greedy answer beside the N candidates and what the verifier said of each.
A search is a JSON record under ``$SHOAL_HOME/ulm/searches``, owned by the
person who asked; only they and admins see it.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from shoal.errors import BadInput, NotFound
from shoal.store.conversations import User
from shoal.store.ids import new_id
from shoal.ulm import checkpoint
from shoal.ulm.harness.base import Task, get_env, heldout

_lock = threading.Lock()  # one torch search at a time in this process
MAX_SAMPLES = 32


def root(home: Path) -> Path:
    return home / "ulm" / "searches"


def task_for(env: str | None, level: int | None, index: int, text: str | None) -> Task:
    """The task to search: held-out task ``index`` of ``env`` at ``level``, or the one stated in ``text``."""
    if text is not None:
        from shoal.ulm.solver import parse_turn

        task = parse_turn(text)
        if task is None:
            raise BadInput(
                f"no harness task in '{text[:80]}'", hint='state one the worlds can check: "sort 3 1 2", "reverse 4 5 6", "12*34"'
            )
        return task
    if env is None or level is None:
        raise BadInput("give env and level (a held-out task), or text (a task in words)")
    tasks = heldout(env, level, index + 1)
    if index >= len(tasks):
        raise BadInput(f"{env} level {level} has {len(tasks)} held-out tasks", hint="a smaller index")
    return tasks[index]


def search(
    run: Path, task: Task, user: User, home: Path, *, n: int = 8, temperature: float = 1.0, max_new: int = 128,
    seed: int = 0, threads: int = 1,
) -> dict[str, Any]:
    """Greedy and ``n`` sampled rollouts of the run's µLM on ``task``, verified; stored and returned (blocking)."""
    import torch

    from shoal.engine.cpu import BUDGET
    from shoal.ulm.search import rollout, sample_many

    if not 1 <= n <= MAX_SAMPLES:
        raise BadInput(f"n must be 1..{MAX_SAMPLES}, not {n}")
    loaded = checkpoint.load(run)
    env = get_env(task.env)
    t0 = time.perf_counter()
    with _lock, BUDGET.borrow(threads):
        torch.set_num_threads(threads)
        [greedy] = rollout(loaded.model, loaded.tokenizer, [task.prompt], temperature=0.0, max_new=max_new)
        [cands] = sample_many(loaded.model, loaded.tokenizer, [task.prompt], n=n, temperature=temperature,
                              max_new=max_new, seed=seed)

    def row(c: Any) -> dict[str, Any]:
        v = env.verify(task, c.text)
        return {"text": c.text, "tokens": c.tokens, "ok": v.ok, "feedback": v.feedback, "answer": v.answer}

    rows = [row(c) for c in cands]
    rec = {
        "id": new_id(), "run": run.name, "owner": user.id, "owner_name": user.name, "created_at": time.time(),
        "env": task.env, "level": task.level, "prompt": task.prompt.strip(), "answer": task.answer,
        "n": n, "temperature": temperature, "max_new": max_new, "iter": loaded.meta.get("iter"),
        "greedy": row(greedy), "candidates": rows, "solved": sum(r["ok"] for r in rows),
        "best_of_n": any(r["ok"] for r in rows), "seconds": round(time.perf_counter() - t0, 2),
    }
    folder = root(home)
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint.atomic_write(folder / f"{rec['id']}.json", json.dumps(rec).encode())
    return rec


def may_see(rec: dict[str, Any], user: User) -> bool:
    return user.is_admin or rec.get("owner") == user.id


def visible(home: Path, user: User, run: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The searches ``user`` may see (of ``run``, if given), newest first."""
    folder = root(home)
    out = []
    for p in sorted(folder.glob("*.json"), reverse=True) if folder.is_dir() else []:
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if may_see(rec, user) and (run is None or rec.get("run") == run):
            out.append(rec)
        if len(out) >= limit:
            break
    return out


def find(home: Path, search_id: str, user: User) -> dict[str, Any]:
    p = root(home) / f"{search_id}.json"
    if search_id.isalnum() and p.is_file():
        rec = json.loads(p.read_text())
        if may_see(rec, user):
            return rec  # type: ignore[no-any-return]
    raise NotFound(f"no µLM search '{search_id}'", hint="GET /api/ulm/searches lists yours")
