"""The closed loop and search at inference, measured on held-out tasks in one run.

Takes a harness-trained µLM (``--run``; default: trains the built-in
``harness`` recipe into $SHOAL_HOME/ulm/runs/harness first), then on one
environment and level (default lists level 4: six digits to sort or reverse):

* round 0: held-out greedy pass@1 and best-of-N scored by the verifier — the
  same model, the same tasks, the same run;
* rounds 1..K of ``shoal.ulm.improve``: search on training tasks, keep the
  verified traces, fine-tune, measure held-out again.

    PYTHONPATH=src nice -n 19 .venv/bin/python bench/ulm_loop.py --env lists --level 4 --rounds 10 --engine

Last line: ``solve_rate_round0: .. solve_rate_final: .. pass_at_1: .. best_of_n: .. ...``;
``first_round_at_goal`` is the first round whose held-out pass@1 reached ``--goal`` (0 = never).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    import torch

    from shoal.config import Settings
    from shoal.ulm.checkpoint import runs_dir
    from shoal.ulm.improve import improve
    from shoal.ulm.recipe import load_recipe
    from shoal.ulm.train import train

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=None, help="a harness-trained run folder")
    ap.add_argument("--env", default="lists")
    ap.add_argument("--level", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--tasks", type=int, default=2000, help="training tasks searched per round")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--heldout", type=int, default=100)
    ap.add_argument("--iters", type=int, default=0, help="fine-tuning steps per round; 0 = three passes over the kept traces")
    ap.add_argument("--max-new", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--engine", action="store_true", help="search and measure in the embedded llama.cpp engine")
    ap.add_argument("--goal", type=float, default=0.9, help="report the first round whose held-out pass@1 reaches it")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    home = Settings().home
    run = a.run or runs_dir(home) / "harness"
    t0 = time.perf_counter()
    if not (run / "ckpt.json").exists():
        print(f"training the harness recipe into {run} ...", flush=True)
        train(load_recipe("harness"), run, threads=a.threads, cache=home / "ulm" / "corpus")
    trained_s = time.perf_counter() - t0
    out = run.parent / f"{run.name}-{a.env}{a.level}-bench{'-engine' if a.engine else ''}"

    def show(r):  # type: ignore[no-untyped-def]
        print(f"round {r.round}: held-out pass@1 {r.heldout_pass_at_1:.2f}  best-of-{a.n} {r.heldout_best_of_n:.2f}  "
              f"kept {r.kept}/{r.tried}  ({time.perf_counter() - t0:.0f} s)", flush=True)

    rounds = improve(run, out, env=a.env, level=a.level, rounds=a.rounds, tasks_per_round=a.tasks, n=a.n,
                     heldout_n=a.heldout, iters=a.iters, max_new=a.max_new, engine=a.engine, on_round=show)
    r0, rk = rounds[0], rounds[-1]
    at_goal = next((r.round for r in rounds if r.heldout_pass_at_1 >= a.goal), 0)
    print(f"curve: {out / 'improve.png'}")
    print(
        f"solve_rate_round0: {r0.heldout_pass_at_1:.2f} solve_rate_final: {rk.heldout_pass_at_1:.2f} "
        f"pass_at_1: {r0.heldout_pass_at_1:.2f} best_of_n: {r0.heldout_best_of_n:.2f} "
        f"best_of_n_gain: {r0.heldout_best_of_n - r0.heldout_pass_at_1:+.2f} n: {a.n} rounds: {a.rounds} "
        f"env: {a.env} level: {a.level} heldout: {a.heldout} max_new: {a.max_new} engine: {int(a.engine)} "
        f"first_round_at_goal: {at_goal} goal: {a.goal} tasks_per_round: {a.tasks} "
        f"loop_seconds: {time.perf_counter() - t0 - trained_s:.0f} train_seconds: {trained_s:.0f} "
        f"seconds: {time.perf_counter() - t0:.0f}"
    )


if __name__ == "__main__":
    main()
