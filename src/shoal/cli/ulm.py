"""``shoal ulm``: train, sample, list, export µLMs; solve harness tasks by search (docs/ulm.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="µLMs: tiny transformers trained here, served by the engine, solving by search.", no_args_is_help=True)
out = Console()


def _home() -> Path:
    from shoal.config import Settings

    return Settings().home


def _run_dir(name: str, out_dir: Optional[Path]) -> Path:
    from shoal.ulm.checkpoint import runs_dir

    return out_dir or runs_dir(_home()) / name


def _nice(level: int) -> None:
    # training is background work: it must never starve the foreground conversation
    try:
        cur = os.nice(0)
        if cur < level:
            os.nice(level - cur)
    except OSError:
        pass


@app.command("train")
def train(
    config: str = typer.Argument(..., help="a recipe TOML file, or a built-in: smoke, char, harness"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="run folder (default $SHOAL_HOME/ulm/runs/NAME)"),
    fresh: bool = typer.Option(False, "--fresh", help="start over instead of resuming the last checkpoint"),
    iters: Optional[int] = typer.Option(None, help="override train.iters"),
    threads: Optional[int] = typer.Option(None, help="torch threads (default: the CPU budget)"),
    nice: int = typer.Option(15, help="process niceness while training"),
) -> None:
    """Train a µLM from a recipe; resumes from the last checkpoint unless --fresh."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from shoal.ulm.recipe import load_recipe
    from shoal.ulm.train import train as run_train

    recipe = load_recipe(config)
    if iters:
        recipe.train.iters = iters
    run = _run_dir(recipe.name, out_dir)
    _nice(nice)
    out.print(f"[bold]training[/] {recipe.name} → {run}")
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.3f}  val {task.fields[val]}  {task.fields[tok_s]:,.0f} tok/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=out,
    ) as progress:
        bar = progress.add_task(recipe.name, total=recipe.train.iters, loss=float("nan"), val="-", tok_s=0.0)

        def on_step(step: dict) -> None:  # type: ignore[type-arg]
            fields = {"loss": step["loss"], "tok_s": step["tok_s"]}
            if "val" in step:
                fields["val"] = f"{step['val']:.3f}"
            progress.update(bar, completed=step["iter"], **fields)

        res = run_train(recipe, run, resume=not fresh, threads=threads, on_step=on_step, cache=_home() / "ulm" / "corpus")
    if res.resumed_from:
        out.print(f"resumed from iteration {res.resumed_from}")
    out.print(
        f"done: {res.n_params / 1e6:.2f}M params, train loss {res.train_loss:.3f}, val loss {res.val_loss:.3f}, "
        f"{res.tokens_per_s:,.0f} tok/s; curves in {run / 'loss.png'}"
    )


@app.command("sample")
def sample(
    run: str = typer.Argument(..., help="run name or folder"),
    prompt: str = typer.Option("\n", "--prompt", "-p"),
    tokens: int = typer.Option(200, "--tokens", "-n"),
    temperature: float = typer.Option(0.8, "--temperature", "-t"),
    top_k: int = typer.Option(40),
    seed: int = typer.Option(0),
    tokenizer: Optional[Path] = typer.Option(None, help="a tokenizer.json (must match the checkpoint)"),
) -> None:
    """Print text sampled from a trained µLM (torch)."""
    import torch

    from shoal.ulm import checkpoint

    loaded = checkpoint.load(checkpoint.resolve(_home(), run), tokenizer=tokenizer)
    ids = loaded.tokenizer.encode(prompt) or [loaded.tokenizer.eot_id]
    gen = torch.Generator().manual_seed(seed)
    outp = loaded.model.generate(torch.tensor([ids]), tokens, temperature=temperature, top_k=top_k, generator=gen)
    out.print(loaded.tokenizer.decode(outp[0].tolist()), markup=False, highlight=False)


@app.command("list")
def list_runs() -> None:
    """The µLM runs under $SHOAL_HOME/ulm/runs."""
    from shoal.ulm.checkpoint import read_meta, runs_dir

    root = runs_dir(_home())
    table = Table("run", "params", "iter", "val loss", "tokens", "tokenizer", "gguf")
    for run in sorted(root.glob("*")) if root.is_dir() else []:
        try:
            meta = read_meta(run)
        except Exception as exc:  # a broken run is listed, not fatal
            table.add_row(run.name, "-", "-", "-", "-", "-", f"[red]{str(exc)[:40]}[/]")
            continue
        hist = meta.get("history") or [{}]
        table.add_row(
            run.name,
            f"{meta.get('n_params', 0) / 1e6:.2f}M",
            f"{meta['iter']}/{meta.get('iters', '?')}",
            f"{hist[-1].get('val', float('nan')):.3f}",
            f"{meta.get('tokens', 0):,}",
            f"{meta.get('tokenizer_kind', '?')} {meta['model']['vocab_size']}",
            "yes" if (run / "model.gguf").exists() else "-",
        )
    if not table.row_count:
        out.print("no µLM runs yet: `shoal ulm train smoke`")
        return
    out.print(table)


@app.command("export")
def export(
    run: str = typer.Argument(..., help="run name or folder"),
    output: Optional[Path] = typer.Option(None, "--out", help="GGUF path (default RUN/model.gguf)"),
) -> None:
    """Write the run as a GGUF file the embedded engine (llama.cpp) serves."""
    from shoal.ulm.checkpoint import resolve
    from shoal.ulm.export import export as do_export

    path = do_export(resolve(_home(), run), output)
    out.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    out.print(
        "serve it: add to shoal.toml\n"
        f'  [[servers]]\n  name = "ulm"\n  kind = "embedded"\n  model_path = "{path}"\n  chat_format = "plain"',
        markup=False,
    )


@app.command("tasks")
def tasks(
    env: str = typer.Argument(..., help="arith, lists or chain"),
    level: int = typer.Option(1),
    n: int = typer.Option(5),
) -> None:
    """Show held-out tasks of an environment with their gold traces."""
    from shoal.ulm.harness import heldout

    for t in heldout(env, level, n):
        out.print(t.prompt + t.gold, markup=False, highlight=False)


@app.command("swarm")
def swarm(
    run: str = typer.Argument(..., help="run name or folder (a harness-trained µLM)"),
    env: str = typer.Option(..., "--env", help="arith, lists or chain"),
    level: int = typer.Option(1),
    n: int = typer.Option(8, "--n", help="samples per task"),
    tasks: int = typer.Option(50, help="held-out tasks"),
    temperature: float = typer.Option(1.0),
    max_new: int = typer.Option(128, help="token budget per candidate"),
    as_json: bool = typer.Option(False, "--json"),
    engine: bool = typer.Option(False, "--engine", help="decode the N samples in the embedded llama.cpp engine (exported GGUF)"),
    guide: Optional[str] = typer.Option(
        None, "--guide", help="a [[servers]] name: its model hints and picks, measured against the unguided swarm (engine)"
    ),
) -> None:
    """Solve held-out tasks: greedy pass@1 against best-of-N scored by the verifier, same run."""
    from rich.progress import Progress

    from shoal.ulm import checkpoint
    from shoal.ulm.harness import heldout
    from shoal.ulm.search import solve

    loaded = checkpoint.load(checkpoint.resolve(_home(), run))
    todo = heldout(env, level, tasks)
    if guide:
        _guided_swarm(loaded, todo, guide, n=n, temperature=temperature, max_new=max_new, as_json=as_json)
        return
    if engine:
        _engine_swarm(loaded, todo, n=n, temperature=temperature, max_new=max_new)
        return
    with Progress(console=out, transient=True) as progress:
        bar = progress.add_task(f"{env} level {level}", total=len(todo))
        rep = solve(
            loaded.model, loaded.tokenizer, todo, n=n, temperature=temperature, max_new=max_new,
            on_task=lambda k, _m: progress.update(bar, completed=k),
        )
    if as_json:
        out.print_json(json.dumps(rep.__dict__))
        return
    for ex in rep.examples[:3]:
        out.print(f"[bold]{ex['prompt']}[/]  greedy: {ex['greedy']}")
        out.print("   " + "  ".join(ex["candidates"]), markup=False)  # type: ignore[arg-type]
    out.print(
        f"{env} L{level}, {rep.tasks} tasks, ≤{max_new} tokens each: pass@1 {rep.pass_at_1:.2f}, "
        f"best-of-{n} {rep.best_of_n:.2f}, one sample {rep.sample_rate:.2f}"
    )


@app.command("improve")
def improve(
    run: str = typer.Argument(..., help="run name or folder (a harness-trained µLM)"),
    env: str = typer.Option(..., "--env"),
    level: int = typer.Option(..., "--level"),
    rounds: int = typer.Option(3),
    tasks: int = typer.Option(2000, help="training tasks searched per round"),
    n: int = typer.Option(8, "--n", help="samples per task"),
    iters: int = typer.Option(0, help="fine-tuning steps per round (0: three passes over what was kept, plus replay)"),
    heldout_n: int = typer.Option(50, "--heldout", help="held-out tasks measured each round"),
    max_new: int = typer.Option(128, help="token budget per sample"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="where the improved run goes (default RUN-ENV-LEVEL)"),
    nice: int = typer.Option(15),
    engine: bool = typer.Option(False, "--engine", help="search and measure in the embedded llama.cpp engine"),
) -> None:
    """The closed loop: search -> keep verified traces -> fine-tune -> held-out solve rate, per round."""
    from shoal.ulm.checkpoint import resolve
    from shoal.ulm.improve import improve as do_improve

    src = resolve(_home(), run)
    dest = out_dir or src.parent / f"{src.name}-{env}{level}"
    _nice(nice)
    table = Table("round", "held-out pass@1", f"best-of-{n}", "verified kept", "tried")

    def show(r) -> None:  # type: ignore[no-untyped-def]
        out.print(f"round {r.round}: pass@1 {r.heldout_pass_at_1:.2f}, best-of-{n} {r.heldout_best_of_n:.2f}, kept {r.kept}/{r.tried}")
        table.add_row(str(r.round), f"{r.heldout_pass_at_1:.2f}", f"{r.heldout_best_of_n:.2f}", str(r.kept), str(r.tried))

    do_improve(src, dest, env=env, level=level, rounds=rounds, tasks_per_round=tasks, n=n, iters=iters,
               heldout_n=heldout_n, max_new=max_new, engine=engine, on_round=show)
    out.print(table)
    out.print(f"improved run in {dest} (curve: {dest / 'improve.png'})")


def _guided_swarm(loaded, todo, guide: str, *, n: int, temperature: float, max_new: int, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from shoal.config import Env
    from shoal.errors import BadInput
    from shoal.ulm.export import export as do_export
    from shoal.ulm.guide import measure

    env = Env.load()
    names = [s.name for s in env.config.servers]
    if guide not in names:
        raise BadInput(f"no server '{guide}' in the cluster", hint=f"[[servers]] in shoal.toml: {', '.join(names) or 'none'}")
    gguf = loaded.run / "model.gguf"
    if not gguf.exists():
        do_export(loaded.run)

    async def go():  # type: ignore[no-untyped-def]
        from shoal.cluster.core import Cluster

        cluster = await Cluster(env.config).start()
        try:
            return await measure(gguf, loaded.tokenizer, todo, cluster.view(guide), guide_name=guide, n=n,
                                 temperature=temperature, max_new=max_new)
        finally:
            await cluster.aclose()

    rep = asyncio.run(go())
    if as_json:
        out.print_json(json.dumps(rep.as_dict()))
        return
    table = Table("arm", "solve rate", "µLM tokens / task", f"guide tokens / task ({guide})")
    per = rep.ulm_tokens / rep.n
    table.add_row("µLM greedy (pass@1)", f"{rep.pass_at_1:.2f}", f"{per:.0f}", "0")
    table.add_row(f"best-of-{rep.n}, verifier", f"{rep.best_of_n:.2f}", f"{rep.ulm_tokens:.0f}", "0")
    table.add_row(f"best-of-{rep.n + rep.extra_samples}, verifier (same budget)", f"{rep.best_of_budget:.2f}",
                  f"{per * (rep.n + rep.extra_samples):.0f}", "0")
    table.add_row(f"guide's first step + best-of-{rep.n}", f"{rep.hinted_best_of_n:.2f}", f"{rep.ulm_tokens:.0f}",
                  f"{rep.guide_tokens_hint:.1f} (+{rep.guide_prompt_tokens_hint:.0f} prompt)")
    table.add_row(f"vote of {rep.n}, no verifier", f"{rep.vote:.2f}", f"{rep.ulm_tokens:.0f}", "0")
    table.add_row(f"vote of {rep.n + rep.extra_pick}, no verifier (same budget)", f"{rep.vote_budget:.2f}",
                  f"{per * (rep.n + rep.extra_pick):.0f}", "0")
    table.add_row(f"guide picks among {rep.n}, no verifier", f"{rep.guide_pick:.2f}", f"{rep.ulm_tokens:.0f}",
                  f"{rep.guide_tokens_pick:.1f} (+{rep.guide_prompt_tokens_pick:.0f} prompt)")
    out.print(table)
    out.print(f"{rep.tasks} held-out tasks of {rep.env} level {rep.level}; the guide's first step had the right shape "
              f"{rep.hint_usable:.0%} of the time and was the gold trace's {rep.hint_right:.0%}")


def _engine_swarm(loaded, todo, *, n: int, temperature: float, max_new: int) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from shoal.ulm.export import export as do_export
    from shoal.ulm.swarm import engine_candidates

    gguf = loaded.run / "model.gguf"
    if not gguf.exists():
        do_export(loaded.run)

    async def go() -> tuple[int, int]:
        g = b = 0
        for t in todo:
            [greedy] = await engine_candidates(gguf, loaded.tokenizer, t, n=1, temperature=0.0, max_new=max_new)
            cands = await engine_candidates(gguf, loaded.tokenizer, t, n=n, temperature=temperature, max_new=max_new)
            g += bool(greedy.verdict and greedy.verdict.ok)
            b += any(c.verdict and c.verdict.ok for c in cands)
        return g, b

    g, b = asyncio.run(go())
    m = len(todo)
    out.print(f"engine, {m} tasks, ≤{max_new} tokens each: pass@1 {g / m:.2f}, best-of-{n} {b / m:.2f}")
