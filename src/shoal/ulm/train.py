"""The training loop: recipe -> tokenizer -> tokens -> AdamW steps, with evals and checkpoints.

nanoGPT's loop, plus what a laptop needs: the loop borrows its threads from
the engine's CPU budget (so llama.cpp in the same process steps down instead
of collapsing, DESIGN.md §4), it resumes from the last checkpoint after a
crash, and it draws its loss curves into ``loss.png`` as it goes.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from shoal.errors import BadInput
from shoal.ulm import checkpoint
from shoal.ulm.data import batch, documents, encode, split
from shoal.ulm.model import ULM, ModelConfig
from shoal.ulm.recipe import Recipe
from shoal.ulm.tokenizer import ULMTokenizer, byte_tokenizer, train_bpe


@dataclass
class TrainResult:
    run: Path
    iters: int
    train_loss: float
    val_loss: float
    tokens_per_s: float
    n_params: int
    resumed_from: int


def lr_at(it: int, r: Recipe) -> float:
    """Linear warm-up, then cosine decay to min_lr (nanoGPT's schedule)."""
    t = r.train
    if it < t.warmup:
        return t.lr * (it + 1) / t.warmup
    progress = min(1.0, (it - t.warmup) / max(1, t.iters - t.warmup))
    return t.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (t.lr - t.min_lr)


def model_config(r: Recipe, vocab_size: int) -> ModelConfig:
    return ModelConfig(vocab_size=vocab_size, **r.model.model_dump())


def _tokenizer(r: Recipe, run: Path, docs: list[str]) -> ULMTokenizer:
    path = run / "tokenizer.json"
    if path.exists():  # a resumed run keeps the tokenizer it started with
        return ULMTokenizer.load(path)
    tok = byte_tokenizer() if r.data.tokenizer == "char" else train_bpe(docs, r.data.vocab_size)
    tok.save(path)
    return tok


def _tokens(r: Recipe, run: Path, tok: ULMTokenizer, docs: list[str]) -> np.ndarray:
    cache = run / f"tokens-{tok.fingerprint}.npy"
    if cache.exists():
        return np.load(cache)
    toks = encode(docs, tok)
    np.save(cache, toks)
    return toks


@torch.no_grad()
def evaluate(model: ULM, data: np.ndarray, r: Recipe, gen: torch.Generator) -> float:
    model.eval()
    losses = [model(*batch(data, r.model.block_size, r.train.batch_size, gen))[1].item() for _ in range(r.train.eval_iters)]
    model.train()
    return float(sum(losses) / len(losses))


def line_plot(
    path: Path,
    xs: Sequence[float],
    lines: Sequence[tuple[str, Sequence[float], str]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    ylim: tuple[float, float] | None = None,
    xticks: bool = False,
) -> Path:
    """A 6 x 3.5 in PNG at ``path``: one line per ``(label, ys, marker)`` over ``xs``, with grid and legend.

    ``xticks`` puts a tick at every x (for a few whole rounds).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for label, ys, marker in lines:
        ax.plot(xs, ys, label=label, marker=marker)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if xticks:
        ax.set_xticks(xs)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot(run: Path, history: list[dict[str, Any]], title: str) -> Path:
    """loss.png: train and validation loss against iterations."""
    return line_plot(
        run / "loss.png",
        [h["iter"] for h in history],
        [("train", [h["train"] for h in history], "."), ("val", [h["val"] for h in history], ".")],
        xlabel="iteration", ylabel="cross-entropy (nats/token)", title=title,
    )


def default_threads() -> int:
    """Threads the engine's CPU budget lends, fewer when other processes already keep cores busy.

    torch's OpenMP threads spin at barriers like llama.cpp's: 2 threads on 2 cores
    with one core taken by someone else ran 5x slower than 1 thread (47k -> 10k
    tok/s, against 26k at 1 thread, measured here).
    """
    from shoal.engine.cpu import BUDGET

    busy = round(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0
    return max(1, min(BUDGET.threads_for(BUDGET.cores), BUDGET.cores - busy))


Progress = Callable[[dict[str, Any]], None]

#: at most this many (iteration, loss) points in progress.json: a long run is thinned, not cut
LIVE_POINTS = 500


class LiveProgress:
    """``progress.json`` in the run folder: what a UI draws while the run trains (written at most once a second).

    Every step's loss goes in, thinned to at most ``LIVE_POINTS`` points (the stride doubles when the
    list is full), with the evaluations, tokens/s and an ETA. ``state`` is running, finished, failed or
    interrupted; a reader that finds "running" with a dead ``pid`` knows the trainer was killed.
    """

    def __init__(self, run: Path, iters: int, start_iter: int) -> None:
        self.path = run / "progress.json"
        self.iters = iters
        self.steps: list[list[float]] = []
        self.stride = 1
        old = read_progress(run)
        if old and start_iter:  # a resumed run keeps the curve it had up to its checkpoint
            self.steps = [s for s in old.get("steps", []) if s[0] <= start_iter]
            self.stride = int(old.get("stride", 1))
        self.last_write = 0.0
        self.step_s = 0.0
        self.state: dict[str, Any] = {}

    def step(self, it: int, loss: float, tok_s: float, dt: float, history: list[dict[str, Any]], *, now: bool = False) -> None:
        """Record one step; write the file if a second has passed, at the last step, or ``now`` (a checkpoint)."""
        if it % self.stride == 0 or it == self.iters:
            self.steps.append([it, round(loss, 4)])
            if len(self.steps) > LIVE_POINTS:
                self.steps = self.steps[::2]
                self.stride *= 2
        self.step_s = dt if not self.step_s else 0.9 * self.step_s + 0.1 * dt
        self.state = {"iter": it, "loss": loss, "tok_s": round(tok_s, 1),
                      "eta_s": round(self.step_s * (self.iters - it), 1), "evals": history}
        if now or time.monotonic() - self.last_write >= 1.0 or it == self.iters:
            self.write("running")

    def write(self, state: str, error: str | None = None) -> None:
        self.last_write = time.monotonic()
        data = {"state": state, "pid": os.getpid(), "iters": self.iters, "updated_at": time.time(),
                "stride": self.stride, "steps": self.steps, **self.state}
        if error:
            data["error"] = error
        checkpoint.atomic_write(self.path, json.dumps(data).encode())


def read_progress(run: Path) -> dict[str, Any] | None:
    """A run's progress.json, or None (never trained here, or unreadable)."""
    try:
        return json.loads((run / "progress.json").read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def train(
    r: Recipe,
    run: Path,
    *,
    resume: bool = True,
    threads: int | None = None,
    on_step: Progress | None = None,
    cache: Path | None = None,
) -> TrainResult:
    """Train (or go on training) the recipe's model in ``run``; returns the final losses.

    ``on_step`` is called every iteration with a dict (iter, iters, loss, tok_s, lr, and
    val after evaluations) so a CLI can draw progress and a server can stream curves.
    """
    from shoal.engine.cpu import BUDGET

    run.mkdir(parents=True, exist_ok=True)
    started = checkpoint.read_meta(run) if resume and (run / "ckpt.json").exists() else None
    if started and started.get("recipe", {}).get("model") != r.model.model_dump():
        raise BadInput(
            f"{run} holds a model of another shape than recipe '{r.name}'",
            hint="train under another --out, or pass --fresh to start over",
        )
    if not started:
        for stale in ("ckpt.pt", "ckpt.json", "tokenizer.json"):
            (run / stale).unlink(missing_ok=True)
        for old in run.glob("tokens-*.npy"):
            old.unlink()
    (run / "recipe.json").write_text(r.model_dump_json(indent=1))

    docs = documents(r.data, cache or run.parent.parent / "corpus")
    tok = _tokenizer(r, run, docs)
    train_data, val_data = split(_tokens(r, run, tok, docs), r.data.val_fraction, r.model.block_size)
    del docs

    n_threads = threads or r.train.threads or default_threads()
    torch.set_num_threads(n_threads)
    torch.manual_seed(r.train.seed)
    gen = torch.Generator().manual_seed(r.train.seed)
    eval_gen = torch.Generator().manual_seed(r.train.seed + 1)
    model = ULM(model_config(r, tok.vocab_size))
    # weight decay on matrices only (not norms): decaying a norm's gain toward 0 fights the norm
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": r.train.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=r.train.lr, betas=(0.9, 0.99), fused=False)
    history: list[dict[str, Any]] = []
    start_iter, tokens_seen, elapsed = 0, 0, 0.0
    if started:
        loaded = checkpoint.load(run)
        model.load_state_dict(loaded.model.state_dict())
        opt.load_state_dict(loaded.state["opt"])
        gen.set_state(loaded.state["rng"])
        start_iter = int(started["iter"])
        history = list(started.get("history", []))
        tokens_seen = int(started.get("tokens", 0))
        elapsed = float(started.get("seconds", 0.0))
    model.train()

    def meta(it: int) -> dict[str, Any]:
        return {
            "name": r.name,
            "iter": it,
            "iters": r.train.iters,
            "model": model.cfg.to_dict(),
            "n_params": model.n_params(),
            "tokenizer": tok.fingerprint,
            "tokenizer_kind": tok.kind,
            "recipe": json.loads(r.model_dump_json()),
            "history": history,
            "tokens": tokens_seen,
            "seconds": round(elapsed, 2),
            "threads": n_threads,
        }

    tokens_per_iter = r.train.batch_size * r.model.block_size
    loss_v, tok_s = float("nan"), 0.0
    borrow = BUDGET.borrow(n_threads) if n_threads else nullcontext()
    live = LiveProgress(run, r.train.iters, start_iter)
    try:
        with borrow:
            for it in range(start_iter, r.train.iters):
                t0 = time.perf_counter()
                for g in opt.param_groups:
                    g["lr"] = lr_at(it, r)
                x, y = batch(train_data, r.model.block_size, r.train.batch_size, gen)
                _, loss = model(x, y)
                assert loss is not None
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if r.train.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), r.train.grad_clip)
                opt.step()
                dt = time.perf_counter() - t0
                elapsed += dt
                tokens_seen += tokens_per_iter
                loss_v = float(loss.item())
                tok_s = tokens_per_iter / dt if dt > 0 else 0.0
                step: dict[str, Any] = {"iter": it + 1, "iters": r.train.iters, "loss": loss_v, "tok_s": tok_s, "lr": lr_at(it, r)}
                done = it + 1 == r.train.iters
                if (it + 1) % r.train.eval_every == 0 or done:
                    val = evaluate(model, val_data, r, eval_gen)
                    trn = evaluate(model, train_data, r, eval_gen)
                    history.append({"iter": it + 1, "train": round(trn, 4), "val": round(val, 4), "tok_s": round(tok_s, 1)})
                    step["val"] = val
                    plot(run, history, f"{r.name}: {model.n_params() / 1e6:.2f}M params")
                saved = (it + 1) % r.train.ckpt_every == 0 or done
                if saved:
                    checkpoint.save(run, model, opt, meta(it + 1), gen)
                live.step(it + 1, loss_v, tok_s, dt, history, now=saved)
                if on_step:
                    on_step(step)
    except KeyboardInterrupt:
        live.write("interrupted")
        raise
    except Exception as exc:
        live.write("failed", f"{type(exc).__name__}: {exc}")
        raise
    live.write("finished")
    if start_iter >= r.train.iters and not history:
        raise BadInput(f"{run} is already trained to {start_iter} iterations", hint="raise train.iters to go on")
    last = history[-1] if history else {"train": loss_v, "val": float("nan")}
    rate = tokens_seen / elapsed if elapsed else tok_s
    return TrainResult(run, r.train.iters, float(last["train"]), float(last["val"]), rate, model.n_params(), start_iter)
