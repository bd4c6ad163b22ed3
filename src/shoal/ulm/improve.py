"""The closed learning loop: search on training tasks -> keep what the verifier accepts -> fine-tune -> measure.

One round:
1. draw training tasks of the target environment and level (never a held-out prompt);
2. roll the µLM out N times per task; keep the traces the verifier accepts;
3. fine-tune on them (mixed with replayed gold traces of the recipe's mix, so
   the easier levels are not forgotten);
4. measure the held-out solve rate (greedy, pass@1) and best-of-N.

No trace of the target level is ever given: whatever the model learns there it
found itself, checked by the world. Rounds are written to ``improve.json`` and
``improve.png`` in the new run folder.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from shoal.ulm import checkpoint
from shoal.ulm.harness.base import Mix, get_env, heldout, training_tasks
from shoal.ulm.model import ULM
from shoal.ulm.search import sample_many, solve
from shoal.ulm.tokenizer import ULMTokenizer
from shoal.ulm.train import line_plot


@dataclass
class Round:
    round: int
    heldout_pass_at_1: float
    heldout_best_of_n: float
    kept: int  # verified traces kept this round (0 at round 0)
    tried: int


def _doc_batch(docs: list[list[int]], prompt_lens: list[int], block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole documents, right-padded: x (B, T), y (B, T) with -1 on padding and on the prompt (only solutions are taught)."""
    T = min(block, max(len(d) for d in docs) - 1)
    x = torch.zeros(len(docs), T, dtype=torch.long)
    y = torch.full((len(docs), T), -1, dtype=torch.long)
    for i, (d, p) in enumerate(zip(docs, prompt_lens)):
        d = d[: T + 1]
        x[i, : len(d) - 1] = torch.tensor(d[:-1])
        y[i, : len(d) - 1] = torch.tensor(d[1:])
        y[i, : max(0, p - 1)] = -1
    return x, y


def finetune(
    model: ULM, tok: ULMTokenizer, texts: list[tuple[str, str]], *, iters: int, batch_size: int, lr: float, seed: int
) -> float:
    """A few AdamW steps on (prompt, solution) pairs; returns the last loss."""
    enc = [(tok.encode(p), tok.encode(s) + [tok.eot_id]) for p, s in texts]
    docs = [p + s for p, s in enc]
    plens = [len(p) for p, _ in enc]
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    loss_v = float("nan")
    for _ in range(iters):
        pick = [rng.randrange(len(docs)) for _ in range(batch_size)]
        x, y = _doc_batch([docs[i] for i in pick], [plens[i] for i in pick], model.cfg.block_size)
        _, loss = model(x, y)
        assert loss is not None
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss_v = float(loss.item())
    model.eval()
    return loss_v


def improve(
    run: Path,
    out: Path,
    *,
    env: str,
    level: int,
    rounds: int = 3,
    tasks_per_round: int = 200,
    n: int = 8,
    heldout_n: int = 50,
    iters: int = 0,
    epochs: float = 2.0,
    batch_size: int = 32,
    lr: float = 3e-4,
    replay: float = 0.5,
    temperature: float = 1.0,
    max_new: int = 64,
    seed: int = 0,
    engine: bool = False,
    on_round: Callable[[Round], None] | None = None,
) -> list[Round]:
    """Rounds of search -> verified traces -> fine-tune on ``env`` at ``level``; the result is saved in ``out``.

    ``iters`` = 0 fine-tunes ``epochs`` passes over each round's kept traces plus replay.
    ``engine``: the search on training tasks runs in the embedded llama.cpp engine (the model
    exported to GGUF each round) — the same samples, ~10x less CPU than torch rollouts.
    """
    loaded = checkpoint.load(run)
    model, tok = loaded.model, loaded.tokenizer
    e = get_env(env)
    e.task(random.Random(0), level)  # an unknown level is a clear error now, not after round 0
    test = heldout(env, level, heldout_n)
    banned = {t.prompt for t in test}
    recipe = loaded.meta.get("recipe", {}).get("data", {})
    gold = training_tasks(
        Mix(recipe.get("envs", [env]), recipe.get("levels", [level]), n_tasks=2000, seed=seed + 99, heldout_n=heldout_n)
    )
    # replay keeps the other worlds and levels from being forgotten; the target itself is never replayed,
    # so whatever the model gains there it found by search
    gold_pairs = [(t.prompt, t.gold) for t in gold if (t.env, t.level) != (env, level)]

    def measure(r: int, kept: int, tried: int) -> Round:
        if engine:
            res = Round(r, *_engine_measure(model, tok, loaded.meta, out, test, n=n, temperature=temperature,
                                            max_new=max_new, seed=seed + 7), kept, tried)
        else:
            rep = solve(model, tok, test, n=n, temperature=temperature, max_new=max_new, seed=seed + 7)
            res = Round(r, rep.pass_at_1, rep.best_of_n, kept, tried)
        if on_round:
            on_round(res)
        return res

    history = [measure(0, 0, 0)]
    found: set[tuple[str, str]] = set()
    rng = random.Random(f"improve:{seed}")
    for r in range(1, rounds + 1):
        tasks = []
        while len(tasks) < tasks_per_round:
            t = e.task(rng, level)
            if t.prompt not in banned:
                tasks.append(t)
        prompts = [t.prompt for t in tasks]
        if engine:
            cands = _engine_search(model, tok, loaded.meta, out, prompts, n=n, temperature=temperature,
                                   max_new=max_new, seed=seed + 1000 * r)
        else:
            cands = sample_many(model, tok, prompts, n=n, temperature=temperature, max_new=max_new, seed=seed + 1000 * r)
        kept: list[tuple[str, str]] = []
        for t, cs in zip(tasks, cands):
            seen: set[str] = set()
            for c in cs:
                if c.text not in seen and e.verify(t, c.text).ok:
                    seen.add(c.text)
                    kept.append((t.prompt, c.text))
        # every verified trace found so far is kept: later rounds learn from earlier finds too
        found.update(kept)
        if found:
            pool = sorted(found)
            n_replay = min(len(gold_pairs), int(len(pool) * replay / max(1e-9, 1 - replay)))
            mix = pool + (rng.sample(gold_pairs, n_replay) if gold_pairs else [])
            # a couple of passes over what was found: more overfits a few hundred traces (measured: 17 passes
            # took lists level 4 from 0.50 down to 0.38)
            steps = iters or max(10, int(epochs * len(mix) / batch_size))
            finetune(model, tok, mix, iters=steps, batch_size=batch_size, lr=lr, seed=seed + r)
        history.append(measure(r, len(kept), len(tasks) * n))

    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(run / "tokenizer.json", out / "tokenizer.json")
    meta = {**loaded.meta, "name": out.name, "improved_from": str(run), "improve": [asdict(h) for h in history],
            "improve_target": {"env": env, "level": level}}
    checkpoint.save(out, model, None, meta, torch.Generator())
    (out / "improve.json").write_text(json.dumps([asdict(h) for h in history], indent=1))
    plot_rounds(out, history, f"{env} level {level}: held-out solve rate by round")
    return history


def _export_now(model: ULM, tok: ULMTokenizer, meta: dict[str, Any], out: Path) -> Path:
    from shoal.ulm.export import export

    out.mkdir(parents=True, exist_ok=True)
    tok.save(out / "tokenizer.json")
    checkpoint.save(out, model, None, {**meta, "name": out.name}, torch.Generator())
    return export(out)


def _engine_search(
    model: ULM, tok: ULMTokenizer, meta: dict[str, Any], out: Path, prompts: list[str], **kw: Any
) -> list[list[Any]]:
    """Export the current weights and let the engine draw the samples."""
    import asyncio

    from shoal.ulm.swarm import engine_sample_many

    return asyncio.run(engine_sample_many(_export_now(model, tok, meta, out), tok, prompts, **kw))


def _engine_measure(
    model: ULM, tok: ULMTokenizer, meta: dict[str, Any], out: Path, test: list[Any], *, n: int, temperature: float,
    max_new: int, seed: int,
) -> tuple[float, float]:
    """Held-out greedy pass@1 and verified best-of-N, both decoded by the engine."""
    import asyncio

    from shoal.ulm.swarm import engine_sample_many

    gguf = _export_now(model, tok, meta, out)
    prompts = [t.prompt for t in test]
    greedy = asyncio.run(engine_sample_many(gguf, tok, prompts, n=1, temperature=0.0, max_new=max_new))
    samples = asyncio.run(engine_sample_many(gguf, tok, prompts, n=n, temperature=temperature, max_new=max_new, seed=seed))
    env = get_env(test[0].env)
    p1 = sum(env.verify(t, g[0].text).ok for t, g in zip(test, greedy)) / len(test)
    bon = sum(any(env.verify(t, c.text).ok for c in cs) for t, cs in zip(test, samples)) / len(test)
    return p1, bon


def plot_rounds(out: Path, history: list[Round], title: str) -> Path:
    xs = [h.round for h in history]
    return line_plot(
        out / "improve.png", xs,
        [("pass@1 (greedy)", [h.heldout_pass_at_1 for h in history], "o"),
         ("best-of-N (verifier)", [h.heldout_best_of_n for h in history], "s")],
        xlabel="round", ylabel="held-out solve rate", title=title, ylim=(0, 1.02), xticks=True,
    )


def table(history: list[Round]) -> list[dict[str, Any]]:
    return [asdict(h) for h in history]
