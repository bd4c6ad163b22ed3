"""The guide, measured: does a stronger model of the cluster help a µLM swarm, at the same token budget?

On held-out tasks of one world and level, in one run, with the same µLM
samples (decoded by the embedded engine from the exported GGUF):

* the µLM alone: greedy pass@1; best-of-N scored by the verifier;
* **hint**: the guide (default: the shipped SmolLM2-135M-Instruct in the
  embedded engine) writes the first step of the scratchpad, few-shot and
  grammar-constrained; the N samples continue from it; the verifier picks.
  Against it, best-of-(N + extra): the guide's generated tokens spent on more
  µLM samples instead (``best_of_budget``);
* **pick** (no verifier): the guide chooses among the N samples' distinct
  answers; against it, the majority vote of the N (+ extra) samples.

    PYTHONPATH=src nice -n 19 .venv/bin/python bench/ulm_guide.py --env lists --level 4 --tasks 100

Last line: ``name: value`` pairs — ``guide_gain_hint`` = hinted best-of-N minus
best-of-budget, ``guide_gain_pick`` = guide's pick minus the vote at the same budget.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


async def run(a: argparse.Namespace) -> None:
    from shoal.backends.embedded import EmbeddedBackend
    from shoal.config import EngineConfig, Settings
    from shoal.ulm import checkpoint
    from shoal.ulm.checkpoint import runs_dir
    from shoal.ulm.export import export
    from shoal.ulm.guide import measure
    from shoal.ulm.harness import heldout
    from shoal.ulm.recipe import load_recipe
    from shoal.ulm.train import train

    home = Settings().home
    src = a.run or runs_dir(home) / "harness"
    if not (src / "ckpt.json").exists():
        print(f"training the harness recipe into {src} ...", flush=True)
        await asyncio.to_thread(train, load_recipe("harness"), src, threads=1, cache=home / "ulm" / "corpus")
    gguf = src / "model.gguf"
    if not gguf.exists() or gguf.stat().st_mtime < (src / "ckpt.pt").stat().st_mtime:
        export(src)
    tok = checkpoint.load(src).tokenizer
    guide = EmbeddedBackend("guide", model_path=a.guide_model, engine=EngineConfig(threads=1, context=2048, max_sequences=4))
    t0 = time.perf_counter()
    try:
        rep = await measure(gguf, tok, heldout(a.env, a.level, a.tasks), guide, guide_name=guide.model_name, n=a.n,
                            max_new=a.max_new, modes=tuple(a.modes.split(",")))  # type: ignore[arg-type]
    finally:
        await guide.aclose()
    d = rep.as_dict()
    for ex in d.pop("examples")[:3]:
        print(json.dumps(ex))
    print(json.dumps(d["seconds"]))
    print(
        f"guide: {rep.guide} run: {src.name} env: {rep.env} level: {rep.level} tasks: {rep.tasks} n: {rep.n} "
        f"max_new: {rep.max_new} pass_at_1: {rep.pass_at_1:.2f} best_of_n: {rep.best_of_n:.2f} "
        f"hinted_best_of_n: {rep.hinted_best_of_n:.2f} best_of_budget: {rep.best_of_budget:.2f} "
        f"extra_samples: {rep.extra_samples} hint_usable: {rep.hint_usable:.2f} hint_right: {rep.hint_right:.2f} "
        f"vote: {rep.vote:.2f} guide_pick: {rep.guide_pick:.2f} vote_budget: {rep.vote_budget:.2f} "
        f"extra_pick: {rep.extra_pick} ulm_tokens_per_task: {rep.ulm_tokens:.0f} "
        f"guide_tokens_hint: {rep.guide_tokens_hint:.1f} guide_prompt_tokens_hint: {rep.guide_prompt_tokens_hint:.0f} "
        f"guide_tokens_pick: {rep.guide_tokens_pick:.1f} guide_prompt_tokens_pick: {rep.guide_prompt_tokens_pick:.0f} "
        f"guide_gain_hint: {rep.hinted_best_of_n - rep.best_of_budget:+.2f} "
        f"guide_gain_pick: {rep.guide_pick - rep.vote_budget:+.2f} seconds: {time.perf_counter() - t0:.0f}"
    )


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=None, help="a harness-trained run folder (default: runs/harness)")
    ap.add_argument("--env", default="lists")
    ap.add_argument("--level", type=int, default=4)
    ap.add_argument("--tasks", type=int, default=100)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-new", type=int, default=128)
    ap.add_argument("--modes", default="hint,pick")
    ap.add_argument("--guide-model", default=None, help="a GGUF for the guide (default: the shipped SmolLM2-135M)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    asyncio.run(run(a))


if __name__ == "__main__":
    main()
