"""Continuous learning: a training run in the background once enough new verdicts arrive (``[learn]``).

``Learner`` is owned by the server (its lifespan starts and stops it). Every
``check_interval`` seconds it counts, per bot it trains, the ratings and
corrections the people in ``learn.users`` gave since the bot's last run; at
``after_verdicts`` (or, with ``every_hours``, when that long has passed and
anything is new) it starts a run:

1. the dataset is built here, per person, with the same privacy and consent rules as
   ``shoal learn dataset`` (each person's own replies only), into the run's folder;
2. ``python -m shoal.learn.job RUN_DIR`` trains, adds the candidate and promotes it (or
   not, saying why). A child process, because torch must not share the server's threads:
   it renices itself to 19, uses ``learn.threads`` torch threads, and pauses between
   examples while the engine writes a person's reply (the ``learn/foreground`` beacon,
   ``engine.cpu``) — in training and in evaluation. The chat is never starved;
3. one run at a time. Stopping the server interrupts a run (SIGINT: the trainer
   checkpoints) and leaves what is served unchanged.

Each run is a folder ``learn/runs/<bot>/<id>/`` with ``job.json`` (below), the
trainer's ``run.json``, ``loss.png``, ``dataset.jsonl`` and ``job.log``. Its
*owners* are the people whose verdicts it used: only they and admins see it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from shoal.errors import BadInput, ConfigError, NotFound
from shoal.store.conversations import User
from shoal.store.db import Database
from shoal.store.ids import new_id

log = logging.getLogger(__name__)

#: states of a run; the last four are final
STATES = ("queued", "running", "finished", "failed", "interrupted", "skipped")


# ------------------------------------------------------------------ run records
def runs_root(home: Path) -> Path:
    return home / "learn" / "runs"


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    tmp.replace(path)


def read_job(run_dir: Path) -> dict[str, Any]:
    """A run's record: its ``job.json``, or for a ``shoal learn train`` run one made from its ``run.json``."""
    job = run_dir / "job.json"
    if job.is_file():
        return json.loads(job.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
    meta = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    return {
        "id": run_dir.name, "bot": run_dir.parent.name, "owners": [], "owner_names": [],
        "trigger": "shoal learn train", "state": "finished" if meta.get("finished") else "interrupted",
        "created_at": (run_dir / "run.json").stat().st_mtime, "losses": meta.get("losses", []),
        "scores": {k: meta.get(k) for k in ("val_loss_base", "val_loss_tuned", "canary_loss_base", "canary_loss_tuned")},
        "train": meta.get("config"), "tokens_per_second": meta.get("tokens_per_second"),
    }


def all_runs(home: Path, bot: str | None = None) -> list[dict[str, Any]]:
    """Every run of ``bot`` (or of every bot), newest first."""
    root = runs_root(home)
    if not root.is_dir():
        return []
    out = []
    for bot_dir in sorted(root.iterdir()):
        if not bot_dir.is_dir() or (bot is not None and bot_dir.name != bot):
            continue
        for run in bot_dir.iterdir():
            if (run / "job.json").is_file() or (run / "run.json").is_file():
                try:
                    out.append(read_job(run))
                except (OSError, ValueError) as exc:  # a damaged record is reported, not fatal
                    out.append({"id": run.name, "bot": bot_dir.name, "owners": [], "state": "failed",
                                "error": f"unreadable record: {exc}", "created_at": 0})
    return sorted(out, key=lambda j: (j.get("created_at") or 0, j["id"]), reverse=True)


def may_see(job: dict[str, Any], user: User) -> bool:
    """Admins see every run; anyone else only runs trained on their own verdicts."""
    return user.is_admin or user.id in job.get("owners", [])


def find_run(home: Path, run_id: str, user: User) -> dict[str, Any]:
    for job in all_runs(home):
        if job["id"] == run_id and may_see(job, user):
            return job
    # someone else's run is indistinguishable from a missing one
    raise NotFound(f"no training run '{run_id}'", hint="GET /api/learn/runs lists the runs you may see")


# ------------------------------------------------------------------ the learner
class Learner:
    """Starts background training runs when ``[learn]`` says so (see the module docstring)."""

    def __init__(self, db: Database, home: Path, config: Callable[[], Any]) -> None:
        self.db = db
        self.home = home
        self._config = config
        self._task: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._running: str | None = None
        self._lock = asyncio.Lock()
        self.last_error: str | None = None
        #: the schedule counts from the last run, or from here when there is none
        self.started_at = time.time()

    @property
    def cfg(self) -> Any:
        return self._config().learn

    @property
    def running(self) -> str | None:
        """The id of the run in progress, if any."""
        return self._running

    def bots(self) -> list[str]:
        """The bots continuous learning trains."""
        config = self._config()
        if self.cfg.bots:
            return list(self.cfg.bots)
        return [b.name for b in config.bots_with_role("conversation")]

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        if not self.cfg.enabled:
            return
        names = {b.name for b in self._config().bots}
        unknown = [b for b in self.cfg.bots if b not in names]
        if unknown:
            raise ConfigError(
                f"learn.bots names unknown bot(s) {', '.join(unknown)} (bots: {', '.join(sorted(names))})",
                hint="fix learn.bots in shoal.toml",
            )
        # the engine touches learn/foreground while it writes a reply only where learn/ exists
        (self.home / "learn").mkdir(parents=True, exist_ok=True)
        self._task = asyncio.create_task(self._loop(), name="learn:loop")

    async def stop(self) -> None:
        """Stop looking, then interrupt a run in progress (it checkpoints); what is served stays."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), timeout=60)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        if self._watch is not None:
            await asyncio.gather(self._watch, return_exceptions=True)
            self._watch = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.check()
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a bad run must not end learning
                self.last_error = str(exc)
                log.exception("continuous learning: the check failed")
            await asyncio.sleep(self.cfg.check_interval)

    # -- deciding -------------------------------------------------------------------------------
    async def owners(self) -> list[User]:
        """The people in ``learn.users`` who exist (an unknown name is skipped and logged)."""
        names = list(self.cfg.users)
        if not names:
            return []
        marks = ",".join("?" * len(names))
        rows = await self.db.read(
            lambda c: c.execute(f"SELECT * FROM users WHERE name IN ({marks}) ORDER BY name", names).fetchall()
        )
        found = [User(r["id"], r["name"], bool(r["is_admin"]), r["created_at"]) for r in rows]
        missing = set(names) - {u.name for u in found}
        if missing:
            log.warning("learn.users names unknown user(s): %s", ", ".join(sorted(missing)))
        return found

    def last_run(self, bot: str) -> dict[str, Any] | None:
        runs = [j for j in all_runs(self.home, bot) if j.get("owners")]  # the background's own runs
        return runs[0] if runs else None

    async def new_verdicts(self, bot: str, owners: list[User], since: float) -> int:
        """Ratings and corrections the owners gave on ``bot``'s replies after ``since``."""
        if not owners:
            return 0
        ids = [u.id for u in owners]
        marks = ",".join("?" * len(ids))
        return int(await self.db.read(lambda c: c.execute(
            "SELECT COUNT(*) FROM learn_feedback f JOIN messages m ON m.id = f.message_id"
            f" WHERE f.user_id IN ({marks}) AND m.bot = ? AND f.updated_at > ?"
            " AND (f.rating IS NOT NULL OR f.correction IS NOT NULL)",
            (*ids, bot, since),
        ).fetchone()[0]))

    async def due(self, bot: str, *, now: float | None = None) -> str | None:
        """Why ``bot`` should be trained now (None: not yet)."""
        now = time.time() if now is None else now
        last = self.last_run(bot)
        since = float(last["created_at"]) if last else 0.0
        n = await self.new_verdicts(bot, await self.owners(), since)
        if n >= self.cfg.after_verdicts:
            return f"{n} new verdicts (after_verdicts = {self.cfg.after_verdicts})"
        hours = self.cfg.every_hours
        if hours > 0 and n > 0 and now - (since or self.started_at) >= hours * 3600:
            return f"schedule: every {hours:g} h, {n} new verdict(s) since the last run"
        return None

    async def status(self, bot: str) -> dict[str, Any]:
        last = self.last_run(bot)
        since = float(last["created_at"]) if last else 0.0
        return {
            "new_verdicts": await self.new_verdicts(bot, await self.owners(), since),
            "after_verdicts": self.cfg.after_verdicts,
            "every_hours": self.cfg.every_hours,
            "last_run": last["id"] if last else None,
            "running": self._running,
        }

    async def check(self, *, now: float | None = None) -> dict[str, Any] | None:
        """Start a run for the first bot that is due (none while one runs); its record."""
        if self._running is not None or not self.cfg.enabled:
            return None
        for bot in self.bots():
            reason = await self.due(bot, now=now)
            if reason:
                return await self.start_run(bot, reason)
        return None

    # -- running ----------------------------------------------------------------------------------
    async def start_run(self, bot: str, trigger: str) -> dict[str, Any]:
        """Build the dataset and start the trainer; the run's record (``skipped`` when there is too little data)."""
        from shoal.learn.base import served_gguf
        from shoal.learn.dataset import Dataset, DatasetCounts, dataset_for

        async with self._lock:
            if self._running is not None:
                raise BadInput(f"a training run is in progress ({self._running})", hint="wait for it to end")
            config = self._config()
            cfg = self.cfg
            config.bot(bot)  # an unknown bot is a NotFound
            owners = await self.owners()
            if not owners:
                raise BadInput("learn.users names nobody who exists here", hint="list existing user names in learn.users")
            run_id = new_id()
            run_dir = runs_root(self.home) / bot / run_id
            run_dir.mkdir(parents=True)
            ds = Dataset()
            total = DatasetCounts()
            for person in owners:
                part = await dataset_for(
                    self.db, config, person, bot=bot, window=cfg.window, val_fraction=cfg.val_fraction
                )
                ds.examples += part.examples
                for k, v in asdict(part.counts).items():
                    setattr(total, k, getattr(total, k) + v)
            ds.counts = total
            ds.write(run_dir / "dataset.jsonl")
            job: dict[str, Any] = {
                "id": run_id, "bot": bot, "owners": [u.id for u in owners], "owner_names": [u.name for u in owners],
                "trigger": trigger, "state": "queued", "created_at": time.time(), "dataset": total.as_dict(),
                "dataset_path": str(run_dir / "dataset.jsonl"), "base": str(served_gguf(config, bot)),
                "train": {"rank": cfg.rank, "alpha": 2.0 * cfg.rank, "lr": cfg.lr, "epochs": cfg.epochs, "batch": cfg.batch,
                          "max_steps": cfg.steps or None, "max_tokens": cfg.max_tokens, "threads": cfg.threads},
                "promote": cfg.promote, "canary_margin": cfg.canary_margin, "losses": [], "progress": {},
            }
            why_not = None
            if total.train == 0:
                why_not = "nothing to learn from yet: no rated-good or corrected replies to train on"
            elif cfg.promote and total.val == 0:
                why_not = ("no validation examples: the held-out split takes whole conversations, "
                           "so rate or correct replies in at least two conversations")
            if why_not:
                job.update(state="skipped", error=why_not, ended_at=time.time())
                write_json(run_dir / "job.json", job)
                log.info("learning run %s for %s skipped: %s", run_id, bot, why_not)
                return job
            write_json(run_dir / "job.json", job)
            env = {**os.environ, "SHOAL_HOME": str(self.home)}
            with (run_dir / "job.log").open("ab") as logf:
                self._proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "shoal.learn.job", str(run_dir),
                    stdin=asyncio.subprocess.DEVNULL, stdout=logf, stderr=logf, env=env,
                )
            self._running = run_id
            self._watch = asyncio.create_task(self._wait(run_dir, self._proc), name=f"learn:run:{run_id}")
            log.info("learning run %s for %s started (%s)", run_id, bot, trigger)
            return job

    async def _wait(self, run_dir: Path, proc: asyncio.subprocess.Process) -> None:
        try:
            rc = await proc.wait()
            job = read_job(run_dir)
            if job["state"] in ("queued", "running"):  # the child died before it could say so
                tail = (run_dir / "job.log").read_text(errors="replace")[-1500:] if (run_dir / "job.log").is_file() else ""
                job.update(
                    state="interrupted" if rc in (130, -signal.SIGINT) else "failed",
                    error=f"the trainer exited with code {rc}" + (f": {tail.strip()}" if tail.strip() else ""),
                    ended_at=time.time(),
                )
                write_json(run_dir / "job.json", job)
        finally:
            self._running = None
            self._proc = None
