"""One background training run, in a process of its own: ``python -m shoal.learn.job RUN_DIR``.

Started by :class:`shoal.learn.continuous.Learner` with ``job.json`` written in
``RUN_DIR``; reads it, trains (``learn.train``), adds the candidate, scores it in
llama.cpp against what is served and promotes it when it is better (``learn.adapters``),
writing its progress and outcome back into ``job.json`` as it goes. It renices itself to
19 before torch starts a thread and pauses, in training and in evaluation, while the engine
writes a person's reply. SIGINT interrupts it cleanly: the checkpoint is kept, nothing is
promoted, the state says ``interrupted``.
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path
from typing import Any


def run(run_dir: Path) -> int:
    from shoal.learn.train import lowest_priority

    nice = lowest_priority()  # first: the threads torch starts later inherit it
    from shoal.config import Settings
    from shoal.errors import ShoalError
    from shoal.learn.continuous import read_job, write_json

    job = read_job(run_dir)
    job.update(state="running", started_at=time.time(), nice=nice)
    path = run_dir / "job.json"
    write_json(path, job)
    try:
        _train_and_promote(Settings().home, run_dir, job, lambda: write_json(path, job))
    except KeyboardInterrupt:
        job.update(state="interrupted", error="stopped (the server shut down); the checkpoint is kept")
    except ShoalError as exc:
        job.update(state="failed", error=exc.message + (f" — {exc.hint}" if exc.hint else ""))
    except Exception as exc:  # noqa: BLE001 - a bug is reported in the record and the log, never hidden
        traceback.print_exc()
        job.update(state="failed", error=f"{type(exc).__name__}: {exc}")
    job["ended_at"] = time.time()
    write_json(path, job)
    return {"finished": 0, "interrupted": 130}.get(job["state"], 1)


def _train_and_promote(home: Path, run_dir: Path, job: dict[str, Any], save: Any) -> None:
    from shoal.learn.adapters import AdapterRegistry
    from shoal.learn.base import gguf_fingerprint
    from shoal.learn.dataset import read_jsonl
    from shoal.learn.evaluate import EngineEvaluator, canary_set
    from shoal.learn.train import TrainConfig, train

    examples = read_jsonl(Path(job["dataset_path"]))
    gguf = Path(job["base"])
    cfg = TrainConfig(**job["train"])
    last_save = [0.0]

    def progress(step: int, total: int, loss: float | None, note: str) -> None:
        job["progress"] = {"step": step, "total": total, "loss": loss, "note": note}
        if loss is not None and step > len(job["losses"]):
            job["losses"].append(loss)
        if note:
            job["paused_notes"] = job.get("paused_notes", 0) + 1
        now = time.monotonic()
        if note or loss is not None or now - last_save[0] > 1.0:
            last_save[0] = now
            save()

    canary = canary_set()
    result = train(home, gguf, examples, run_dir, cfg, canary=canary, progress=progress)
    job.update(
        losses=result.losses, paused_seconds=round(result.paused_seconds, 2),
        tokens_per_second=round(result.tokens_per_second, 1), steps=result.steps,
        scores={"val_loss_base": result.val_loss_base, "val_loss_tuned": result.val_loss_tuned,
                "canary_loss_base": result.canary_loss_base, "canary_loss_tuned": result.canary_loss_tuned},
    )
    if not result.finished:
        raise KeyboardInterrupt
    reg = AdapterRegistry(home, job["bot"])
    job["served_before"] = reg.current
    job["version"] = reg.add_candidate(run_dir, [e for e in examples if e.get("split") == "val"])
    job["progress"] = {**job["progress"], "note": "scoring the candidate in llama.cpp"}
    save()
    if not job.get("promote", True):
        job.update(state="finished", decision={"promoted": False, "reason": "learn.promote is off", "served": reg.current})
        return
    ev = EngineEvaluator(gguf, yield_to_foreground=True)
    try:
        decision = reg.promote(
            job["version"], ev, canary, canary_margin=float(job.get("canary_margin", 0.10)),
            base_fingerprint=gguf_fingerprint(gguf),
        )
    finally:
        job["paused_seconds"] = round(job.get("paused_seconds", 0.0) + ev.paused_seconds, 2)
        ev.close()
    job.update(state="finished", decision=decision.as_dict())


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not (Path(args[0]) / "job.json").is_file():
        print("usage: python -m shoal.learn.job RUN_DIR (a folder with job.json, written by the server)", file=sys.stderr)
        return 2
    return run(Path(args[0]))


if __name__ == "__main__":
    sys.exit(main())
