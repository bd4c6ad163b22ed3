"""µLM training runs as the server sees them: who owns each, its state and curves, and runs started in the background.

A run is a folder under ``$SHOAL_HOME/ulm/runs`` (``checkpoint.py``). One
started from the web UI also holds ``owner.json`` (who started it, when, with
which recipe): its owner and admins see it. A run made by ``shoal ulm train``
has no owner and is an admin's to see. While a run trains, ``train.py`` keeps
its ``progress.json`` (the loss of every step, thinned), so a reader draws the
curve live, whoever started the run.

``Trainer`` starts ``shoal ulm train RECIPE --out RUN`` as a child process at
nice 19 (torch must not share the server's threads) — one run at a time on
this machine — and interrupts it when the server stops; the same command
resumes it from its last checkpoint.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

from shoal.errors import BadInput, NotFound
from shoal.store.conversations import User
from shoal.ulm import checkpoint
from shoal.ulm.recipe import Recipe, builtin_recipes, load_recipe, parse_recipe
from shoal.ulm.train import read_progress

OWNER = "owner.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: the corpora a recipe from the web may use: never a path on the server's disk; "conversations" are the owner's own
WEB_CORPORA = ("shakespeare", "harness", "conversations")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def read_owner(run: Path) -> dict[str, Any]:
    try:
        return json.loads((run / OWNER).read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return {}


def state_of(run: Path, progress: dict[str, Any] | None, meta: dict[str, Any] | None) -> str:
    """queued, running, finished, failed or interrupted (a trainer that died mid-run, kill -9 included)."""
    if progress:
        st = str(progress.get("state", "running"))
        if st == "running" and not _alive(int(progress.get("pid", 0) or 0)):
            return "interrupted"
        return st
    if meta:
        return "finished" if meta.get("iter", 0) >= meta.get("iters", 1) else "interrupted"
    return "queued" if (run / OWNER).is_file() else "empty"


def summary(run: Path) -> dict[str, Any]:
    """One line of the runs table: state, progress, losses, owner."""
    progress = read_progress(run)
    try:
        meta: dict[str, Any] | None = checkpoint.read_meta(run)
    except Exception:  # no checkpoint yet, or a damaged one: the run is listed all the same
        meta = None
    owner = read_owner(run)
    hist = (meta or {}).get("history") or (progress or {}).get("evals") or []
    out: dict[str, Any] = {
        "name": run.name,
        "state": state_of(run, progress, meta),
        "owner": owner.get("user_id"),
        "owner_name": owner.get("user_name"),
        "recipe": owner.get("recipe") or (meta or {}).get("name") or run.name,
        "started_at": owner.get("started_at"),
        "iter": (progress or {}).get("iter") or (meta or {}).get("iter", 0),
        "iters": (progress or {}).get("iters") or (meta or {}).get("iters"),
        "loss": (progress or {}).get("loss"),
        "val": hist[-1].get("val") if hist else None,
        "tok_s": (progress or {}).get("tok_s"),
        "eta_s": (progress or {}).get("eta_s"),
        "updated_at": (progress or {}).get("updated_at"),
        "n_params": (meta or {}).get("n_params"),
        "improve": (meta or {}).get("improve"),
        "improve_target": (meta or {}).get("improve_target"),
        "error": (progress or {}).get("error"),
    }
    return out


def detail(run: Path) -> dict[str, Any]:
    """A run with its curves: every step's loss (thinned), and train/val loss at each evaluation."""
    progress = read_progress(run) or {}
    out = summary(run)
    try:
        meta = checkpoint.read_meta(run)
    except Exception:
        meta = {}
    out["steps"] = progress.get("steps", [])
    out["evals"] = meta.get("history") or progress.get("evals", [])
    out["model"] = meta.get("model")
    out["recipe_detail"] = meta.get("recipe")
    out["log"] = _tail(run / "train.log")
    return out


def _tail(path: Path, n: int = 2000) -> str:
    try:
        data = path.read_bytes()[-n:]
    except OSError:
        return ""
    # the CLI's progress bar redraws with carriage returns: keep the last state of each line
    return "\n".join(line.rsplit("\r", 1)[-1] for line in data.decode("utf-8", "replace").splitlines())


def may_see(s: dict[str, Any], user: User) -> bool:
    """Admins see every run; anyone else only the runs they started."""
    return user.is_admin or (s.get("owner") is not None and s["owner"] == user.id)


def visible(home: Path, user: User) -> list[dict[str, Any]]:
    """The runs ``user`` may see, newest first."""
    root = checkpoint.runs_dir(home)
    runs = [summary(p) for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    runs = [r for r in runs if r["state"] != "empty" and may_see(r, user)]
    return sorted(runs, key=lambda r: (r.get("updated_at") or r.get("started_at") or 0, r["name"]), reverse=True)


def find(home: Path, name: str, user: User) -> Path:
    """The folder of run ``name`` if ``user`` may see it; someone else's run is reported like a missing one."""
    run = checkpoint.runs_dir(home) / name
    if _NAME.match(name) and run.is_dir() and may_see(summary(run), user):
        return run
    raise NotFound(f"no µLM run '{name}'", hint="GET /api/ulm/runs lists the runs you may see")


def web_recipe(recipe: str | None, toml: str | None, iters: int | None) -> Recipe:
    """A recipe a web user asked for: a built-in by name or TOML text, on a built-in corpus only."""
    if (recipe is None) == (toml is None):
        raise BadInput("give either a built-in recipe name or a recipe's TOML", hint='e.g. {"recipe": "smoke"}')
    if recipe is not None and recipe not in builtin_recipes():  # a name, never a path on the server
        raise BadInput(f"no built-in recipe '{recipe}'", hint=f"built-ins: {', '.join(builtin_recipes())}")
    r = load_recipe(recipe) if recipe is not None else parse_recipe(toml or "", "the request")
    if r.data.corpus not in WEB_CORPORA:
        raise BadInput(
            f"corpus '{r.data.corpus}' is not allowed from the web",
            hint=f"use one of {', '.join(WEB_CORPORA)}; other corpora with `shoal ulm train` on the server",
        )
    if iters:
        r.train.iters = iters
    return r


class Trainer:
    """Trains one µLM at a time in a child process; owned by the server (``close`` interrupts the run)."""

    def __init__(self, home: Path, *, threads: int = 0) -> None:
        self.home = home
        self.threads = threads
        self._proc: asyncio.subprocess.Process | None = None
        self._run: Path | None = None
        self._waiter: asyncio.Task[None] | None = None

    @property
    def running(self) -> str | None:
        return self._run.name if self._run is not None and self._proc is not None and self._proc.returncode is None else None

    async def start(self, r: Recipe, user: User, name: str | None = None) -> Path:
        name = name or f"{r.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        if not _NAME.match(name):
            raise BadInput(f"run name '{name}' is not allowed", hint="letters, digits, '-', '_', '.'; at most 64")
        run = checkpoint.runs_dir(self.home) / name
        if run.exists():
            raise BadInput(f"a µLM run named '{name}' exists", hint="choose another name")
        if self.running and self._proc is not None and self._run is not None:
            # a trainer that wrote its outcome is only exiting: wait for it rather than refuse
            if state_of(self._run, read_progress(self._run), None) in ("finished", "failed", "interrupted"):
                try:
                    await asyncio.wait_for(self._proc.wait(), 30)
                except asyncio.TimeoutError:
                    pass
        if self.running:
            raise BadInput(f"µLM run '{self.running}' is training", hint="one run trains at a time; wait, or stop it")
        if r.data.corpus == "conversations":
            r.data.user = user.name  # from the web, only your own conversations, whatever the recipe says
        run.mkdir(parents=True)
        checkpoint.atomic_write(run / OWNER, json.dumps(
            {"user_id": user.id, "user_name": user.name, "started_at": time.time(), "recipe": r.name}).encode())
        recipe_file = run / "recipe.toml"
        recipe_file.write_text(_toml(r))
        args = [sys.executable, "-m", "shoal", "ulm", "train", str(recipe_file), "--out", str(run), "--nice", "19"]
        if self.threads:
            args += ["--threads", str(self.threads)]
        env = {**os.environ, "SHOAL_HOME": str(self.home), "COLUMNS": "120"}
        log = open(run / "train.log", "wb")
        try:
            self._proc = await asyncio.create_subprocess_exec(*args, stdout=log, stderr=asyncio.subprocess.STDOUT, env=env)
        finally:
            log.close()
        self._run = run
        self._waiter = asyncio.create_task(self._proc.wait())  # type: ignore[arg-type]
        return run

    async def stop(self, name: str) -> bool:
        """Interrupt the run if it is the one training (it checkpoints as it goes; the same start resumes it)."""
        if self.running != name or self._proc is None:
            return False
        self._proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(self._proc.wait(), 20)
        except asyncio.TimeoutError:
            self._proc.kill()
            await self._proc.wait()
        return True

    async def close(self) -> None:
        if self.running:
            await self.stop(self.running)  # type: ignore[arg-type]
        if self._waiter is not None:
            self._waiter.cancel()


def _toml(r: Recipe) -> str:
    """The recipe as TOML that ``parse_recipe`` reads back (what the child trains)."""
    d = r.model_dump()
    lines = [f"name = {json.dumps(d.pop('name'))}"]
    if "description" in d:
        lines.append(f"description = {json.dumps(d.pop('description'))}")
    for section, fields in d.items():
        lines.append(f"[{section}]")
        for k, v in fields.items():
            if v is None:
                continue
            lines.append(f"{k} = {json.dumps(v)}")
    return "\n".join(lines) + "\n"
