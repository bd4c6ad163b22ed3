"""LoRA fine-tuning of the served model on a person's dataset, on the CPU.

Reads top to bottom:

1. the base model comes from the served GGUF (``learn.base``: dequantised once, cached fp32);
2. each example is rendered with the *serving* chat template (``engine.chat.render``) and
   tokenised; the loss covers only the target reply (its tokens through ``<|im_end|>``);
3. peft wraps q/k/v/o with rank-r adapters; AdamW on those (~0.9M params at r=8);
4. every ``checkpoint_every`` steps (and on Ctrl-C) the adapter, the optimiser and the step
   are written atomically; ``resume`` continues from there with the same example order;
5. the loss curve goes to ``loss.png``; the adapter to ``adapter/`` (peft) and, converted,
   to ``adapter.gguf`` for llama.cpp (``learn.gguf_lora``).

Training never starves the chat: the process runs at the lowest priority (nice 19) and,
between examples, waits while a foreground reply is being written (``CpuBudget.foreground_busy``:
2 llama.cpp threads + 2 torch threads on 2 cores collapse decode, DESIGN.md §4).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from shoal.errors import BadInput

#: what a step reports to the progress display: (step, total, loss, note)
Progress = Callable[[int, int, float | None, str], None]


@dataclass
class TrainConfig:
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    lr: float = 1e-3
    epochs: float = 3.0
    #: examples per optimiser step (gradient accumulation over single examples)
    batch: int = 4
    #: a step count that overrides epochs (tests, smoke runs)
    max_steps: int | None = None
    max_tokens: int = 384
    seed: int = 0
    threads: int = 2
    checkpoint_every: int = 10
    #: wait between examples while a person's reply is being written
    yield_to_foreground: bool = True

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d


@dataclass
class Encoded:
    ids: list[int]
    #: tokens before the target (the loss starts predicting at ids[n_prompt])
    n_prompt: int

    @property
    def n_target(self) -> int:
        return len(self.ids) - self.n_prompt


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    losses: list[float]
    tokens: int
    seconds: float
    paused_seconds: float
    val_loss_base: float | None = None
    val_loss_tuned: float | None = None
    canary_loss_base: float | None = None
    canary_loss_tuned: float | None = None
    finished: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        busy = max(1e-9, self.seconds - self.paused_seconds)
        return self.tokens / busy


# ------------------------------------------------------------------ data
def template_of(tokenizer: Any) -> str:
    from shoal.engine.llama import CHATML

    return str(getattr(tokenizer, "chat_template", None) or CHATML)


def encode(messages: Sequence[dict[str, str]], tokenizer: Any, template: str, max_tokens: int) -> Encoded:
    """Prompt = everything before the last (assistant) message, as the engine renders it; target = that message."""
    from shoal.engine.chat import render
    from shoal.types import ChatMessage

    msgs = [ChatMessage(m["role"], m["content"]) for m in messages]  # type: ignore[arg-type]
    prompt = render(template, msgs[:-1], add_generation_prompt=True)
    full = render(template, msgs, add_generation_prompt=False)
    if not full.startswith(prompt):
        raise BadInput("the chat template does not put the reply after the prompt; cannot mask the loss")
    target = full[len(prompt):].rstrip("\n")  # learn to stop: the end-of-turn token is in the target
    p_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    t_ids = tokenizer(target, add_special_tokens=False).input_ids[: max(1, max_tokens // 2)]
    keep = max_tokens - len(t_ids)
    p_ids = p_ids[-keep:] if len(p_ids) > keep else p_ids
    return Encoded(p_ids + t_ids, len(p_ids))


def target_loss(model: Any, ex: Encoded) -> Any:
    """Summed cross-entropy of the target tokens (a 0-d tensor); logits only where they are needed."""
    import torch
    import torch.nn.functional as F

    ids = torch.tensor([ex.ids])
    keep = ex.n_target + 1  # positions n_prompt-1 .. T-1; the last predicts nothing
    logits = model(input_ids=ids, logits_to_keep=keep, use_cache=False).logits[0, :-1]  # (n_target, V)
    labels = ids[0, ex.n_prompt:]
    return F.cross_entropy(logits.float(), labels, reduction="sum")


def mean_loss(model: Any, examples: Sequence[Encoded]) -> float | None:
    """Mean per-token target loss over ``examples`` (None when there are none)."""
    import torch

    if not examples:
        return None
    total, n = 0.0, 0
    with torch.no_grad():
        for ex in examples:
            total += float(target_loss(model, ex))
            n += ex.n_target
    return total / max(1, n)


# ------------------------------------------------------------------ checkpoints
def _save_checkpoint(run_dir: Path, model: Any, opt: Any, state: dict[str, Any]) -> None:
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    tmp = run_dir / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {k: v.detach().contiguous() for k, v in get_peft_model_state_dict(model).items()}
    save_file(weights, str(tmp / "adapter.safetensors"))
    torch.save(opt.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(state))
    final = run_dir / "checkpoint"
    old = run_dir / "checkpoint.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(run_dir: Path, model: Any, opt: Any) -> dict[str, Any] | None:
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    ck = run_dir / "checkpoint"
    if not (ck / "state.json").is_file():
        return None
    try:
        state = json.loads((ck / "state.json").read_text())
        set_peft_model_state_dict(model, load_file(str(ck / "adapter.safetensors")))
        opt.load_state_dict(torch.load(ck / "optimizer.pt", weights_only=True))
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise BadInput(
            f"the checkpoint in {ck} is damaged ({str(exc)[:200]})", hint="start a new run (leave out --resume)"
        ) from exc
    return state  # type: ignore[no-any-return]


def plot_losses(path: Path, losses: Sequence[float], *, val: dict[str, float | None] | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(range(1, len(losses) + 1), losses, label="train (per step)")
    for name, value in (val or {}).items():
        if value is not None:
            ax.axhline(value, linestyle="--", linewidth=1, label=f"{name} {value:.3f}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (target tokens)")
    ax.set_title("shoal learn: LoRA loss")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# ------------------------------------------------------------------ the run
def lowest_priority() -> int:
    """Renice this process to 19 (threads created after this inherit it); the niceness now."""
    try:
        return os.nice(19 - os.nice(0))
    except OSError:
        return os.nice(0)


def wait_for_foreground(max_wait: float = 600.0) -> float:
    """Block while a person's reply is being written; seconds waited."""
    from shoal.engine.cpu import BUDGET

    start = time.monotonic()
    while BUDGET.foreground_busy() and time.monotonic() - start < max_wait:
        time.sleep(0.05)
    return time.monotonic() - start


def train(
    home: Path,
    gguf: Path,
    examples: Sequence[dict[str, Any]],
    run_dir: Path,
    cfg: TrainConfig,
    *,
    canary: Sequence[dict[str, Any]] = (),
    resume: bool = False,
    progress: Progress | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train a LoRA on ``examples`` (their ``split`` says train or val) into ``run_dir``.

    ``stop_after`` ends the run early as an interruption would (tests); the checkpoint stays.
    """
    import torch
    from peft import LoraConfig, get_peft_model

    from shoal.engine.cpu import BUDGET
    from shoal.learn.base import gguf_fingerprint, load_base

    train_ex = [e for e in examples if e.get("split", "train") == "train"]
    val_ex = [e for e in examples if e.get("split") == "val"]
    if not train_ex:
        raise BadInput(
            "the dataset has no training examples",
            hint="rate or correct more replies, then `shoal learn dataset` (validation takes whole conversations)",
        )
    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    base, tok = load_base(home, gguf)
    template = template_of(tok)
    enc_train = [encode(e["messages"], tok, template, cfg.max_tokens) for e in train_ex]
    enc_val = [encode(e["messages"], tok, template, cfg.max_tokens) for e in val_ex]
    enc_canary = [encode(e["messages"], tok, template, cfg.max_tokens) for e in canary]

    base.config.use_cache = False
    lora = LoraConfig(
        r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules), bias="none", task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():  # transformers deprecations peft trips over (not ours to fix)
        warnings.simplefilter("ignore", FutureWarning)
        model = get_peft_model(base, lora)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)

    steps_per_epoch = math.ceil(len(enc_train) / cfg.batch)
    total = cfg.max_steps or max(1, round(cfg.epochs * steps_per_epoch))
    # the whole example order, fixed by the seed: a resumed run sees what the interrupted one would have
    rng = random.Random(cfg.seed)
    order: list[int] = []
    while len(order) < total * cfg.batch:
        epoch = list(range(len(enc_train)))
        rng.shuffle(epoch)
        order += epoch

    meta = {
        "config": cfg.as_dict(),
        "base": str(gguf),
        "base_fingerprint": gguf_fingerprint(gguf),
        "train_examples": len(enc_train),
        "val_examples": len(enc_val),
        "canary_examples": len(enc_canary),
        "total_steps": total,
    }
    state: dict[str, Any] = {"step": 0, "losses": [], "tokens": 0, "paused": 0.0, "seconds": 0.0}
    if resume:
        old = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
        if old and (old.get("config") != meta["config"] or old.get("base_fingerprint") != meta["base_fingerprint"]):
            raise BadInput(
                f"{run_dir} was started with other settings or another base model; it cannot be resumed with these",
                hint="resume with the same options, or start a new run",
            )
        loaded = _load_checkpoint(run_dir, model, opt)
        if loaded is None:
            raise BadInput(f"nothing to resume in {run_dir}", hint="start a new run (leave out --resume)")
        state = loaded
    (run_dir / "run.json").write_text(json.dumps({**meta, "finished": False}, indent=1))

    val_base = canary_base = None
    if state["step"] == 0 or "val_loss_base" not in state:
        with model.disable_adapter():
            model.eval()
            val_base, canary_base = mean_loss(model, enc_val), mean_loss(model, enc_canary)
        state["val_loss_base"], state["canary_loss_base"] = val_base, canary_base
    val_base, canary_base = state["val_loss_base"], state["canary_loss_base"]

    model.train()
    started = time.monotonic() - state["seconds"]
    finished = True
    try:
        while state["step"] < total:
            step = state["step"]
            if stop_after is not None and step >= stop_after:
                raise KeyboardInterrupt
            batch = [enc_train[i] for i in order[step * cfg.batch : (step + 1) * cfg.batch]]
            n_tok = sum(e.n_target for e in batch)
            lr = cfg.lr * (1.0 - 0.9 * step / max(1, total))  # linear decay to a tenth
            for g in opt.param_groups:
                g["lr"] = lr
            loss_sum = 0.0
            for ex in batch:
                if cfg.yield_to_foreground and BUDGET.foreground_busy():
                    if progress:
                        progress(step, total, None, "paused: a reply is being written")
                    state["paused"] += wait_for_foreground()
                    if progress:
                        progress(step, total, None, "")
                loss = target_loss(model, ex)
                (loss / n_tok).backward()
                loss_sum += float(loss.detach())
                state["tokens"] += len(ex.ids)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            state["step"] = step + 1
            state["losses"].append(loss_sum / n_tok)
            state["seconds"] = time.monotonic() - started
            if progress:
                progress(state["step"], total, state["losses"][-1], "")
            if state["step"] % cfg.checkpoint_every == 0 and state["step"] < total:
                _save_checkpoint(run_dir, model, opt, state)
    except KeyboardInterrupt:
        finished = False
    state["seconds"] = time.monotonic() - started
    _save_checkpoint(run_dir, model, opt, state)
    result = TrainResult(
        run_dir, state["step"], list(state["losses"]), state["tokens"], state["seconds"], state["paused"],
        val_loss_base=val_base, canary_loss_base=canary_base, finished=finished,
    )
    if not finished:
        plot_losses(run_dir / "loss.png", result.losses)
        return result

    model.eval()
    result.val_loss_tuned, result.canary_loss_tuned = mean_loss(model, enc_val), mean_loss(model, enc_canary)
    adapter_dir = run_dir / "adapter"
    shutil.rmtree(adapter_dir, ignore_errors=True)
    model.save_pretrained(adapter_dir, save_embedding_layers=False)
    from shoal.learn.gguf_lora import export_gguf_lora

    export_gguf_lora(adapter_dir, base.config, run_dir / "adapter.gguf", base_fingerprint=meta["base_fingerprint"])
    plot_losses(
        run_dir / "loss.png", result.losses,
        val={"val base": val_base, "val tuned": result.val_loss_tuned,
             "canary base": canary_base, "canary tuned": result.canary_loss_tuned},
    )
    summary = {
        **meta, "finished": True, "steps": result.steps, "losses": result.losses,
        "tokens": result.tokens, "seconds": round(result.seconds, 2), "paused_seconds": round(result.paused_seconds, 2),
        "tokens_per_second": round(result.tokens_per_second, 1),
        "val_loss_base": val_base, "val_loss_tuned": result.val_loss_tuned,
        "canary_loss_base": canary_base, "canary_loss_tuned": result.canary_loss_tuned,
    }
    (run_dir / "run.json").write_text(json.dumps(summary, indent=1))
    return result
