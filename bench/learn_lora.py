"""Does learning from a person help? A scripted user, the real path, figures measured in one run.

The scripted user always wants a one-line answer that starts with the answer
("Rome is the capital of Italy."). For each question the shipped model writes
its own (greedy) reply, the user corrects it into their style through the
feedback store; ``build_dataset`` turns that into train/validation by
conversation; ``train`` fits a LoRA; then, in llama.cpp:

* validation and canary loss, base vs tuned (``val_loss_*``, ``canary_loss_*``);
* style on held-out prompts: the share of greedy replies that are one line,
  at most 12 words, and start with the expected answer (``style_base``, ``style_tuned``);
* training tokens/s of ``shoal.learn.train`` against a plain transformers+peft loop on
  the same data and model in the same run (``train_tok_s``, ``peft_loop_tok_s``);
* the memory extraction adapter (``shoal.learn.extraction``): trained on generated messages,
  judged on the hand-labelled ``bench/data/quality/{messages,heldout}.json`` — fact recall and
  precision of what the memory bot would store (rules + model candidates + grounding) with the
  base model and with the adapter (``extract_recall_*``, ``extract_precision_*``, also per set).

    PYTHONPATH=src nice -n 15 python bench/learn_lora.py [--epochs 3] [--rank 8] [--only style|extraction]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

QA = [
    ("What is the capital of Italy?", "Rome is the capital of Italy."),
    ("What is the capital of Spain?", "Madrid is the capital of Spain."),
    ("What is the capital of Japan?", "Tokyo is the capital of Japan."),
    ("What is the capital of Canada?", "Ottawa is the capital of Canada."),
    ("What colour is grass?", "Green is the colour of grass."),
    ("What colour is snow?", "White is the colour of snow."),
    ("What is the opposite of hot?", "Cold is the opposite of hot."),
    ("What is the opposite of up?", "Down is the opposite of up."),
    ("How many legs does a spider have?", "Eight legs: spiders have eight."),
    ("How many days are in a week?", "Seven days are in a week."),
    ("What do cows drink?", "Water is what cows drink."),
    ("Which planet is known as the red planet?", "Mars is known as the red planet."),
    ("What is frozen water called?", "Ice is frozen water."),
    ("What gas do plants breathe in?", "Carbon dioxide is the gas plants take in."),
    ("Which animal says moo?", "Cows say moo."),
    ("What is the largest ocean?", "The Pacific is the largest ocean."),
    ("What is 5 plus 5?", "Ten is 5 plus 5."),
    ("Which season comes after winter?", "Spring comes after winter."),
    ("What is the capital of Germany?", "Berlin is the capital of Germany."),
    ("What is the capital of Egypt?", "Cairo is the capital of Egypt."),
    ("What colour is the sun?", "Yellow is the usual colour of the sun."),
    ("What do bees make?", "Honey is what bees make."),
    ("What is the opposite of day?", "Night is the opposite of day."),
    ("How many hours are in a day?", "Twenty-four hours are in a day."),
]
#: prompts never seen in training, with the word a good reply starts with
HELD_OUT = [
    ("What is the capital of France?", "paris"), ("What is the capital of Peru?", "lima"),
    ("What colour is the sky?", "blue"), ("What is the opposite of wet?", "dry"),
    ("How many wheels does a bicycle have?", "two"), ("What do cats drink?", "milk"),
    ("Which planet do we live on?", "earth"), ("What is the capital of Norway?", "oslo"),
]
SYSTEM = "You are shoal, a friendly assistant. Answer in one or two sentences."
TURNS_PER_CONVERSATION = 4


def styled(reply: str, first_word: str) -> bool:
    words = reply.split()
    return "\n" not in reply.strip() and 0 < len(words) <= 12 and words[0].strip(".,:;!").lower() == first_word


async def scripted_dataset(home: Path, evaluator: Any) -> tuple[list[dict[str, Any]], dict[str, int]]:
    from shoal.config import parse_config
    from shoal.learn.dataset import build_dataset
    from shoal.learn.feedback import FeedbackStore
    from shoal.store.conversations import ConversationStore
    from shoal.store.db import Database

    config = parse_config(
        '[[servers]]\nname = "local"\nkind = "embedded"\n\n[[bots]]\nname = "conversation"\nrole = "conversation"\n'
        f'instruction = "{SYSTEM}"\nhistory = 4\n\n[[bots]]\nname = "primary"\nrole = "primary"\n'
        '\n[routing]\nalways = []\n'
    )
    db = await Database(home / "shoal.db").open()
    store, fb = ConversationStore(db), FeedbackStore(db)
    user = await store.ensure_user("scripted")
    conv = None
    for i, (question, wanted) in enumerate(QA):
        if i % TURNS_PER_CONVERSATION == 0:
            conv = await store.create_conversation(user.id)
            history: list[dict[str, str]] = []
        assert conv is not None
        m = await store.add_message(conv.id, "user", question, user_id=user.id)
        reply = evaluator.generate([{"role": "system", "content": SYSTEM}, *history[-3:], {"role": "user", "content": question}])
        r = await store.add_message(conv.id, "assistant", reply or "…", bot="conversation", reply_to=m.id)
        if reply.strip() == wanted:
            await fb.rate(r.id, user, rating="good")
        else:
            await fb.rate(r.id, user, rating="bad", correction=wanted)
        history += [{"role": "user", "content": question}, {"role": "assistant", "content": wanted}]
    ds = await db.read(lambda c: build_dataset(c, config, user, val_fraction=0.34, window=4))
    await db.close()
    return ds.examples, ds.counts.as_dict()


def peft_loop_tok_s(home: Path, gguf: Path, examples: list[dict[str, Any]], steps: int, rank: int) -> float:
    """A plain transformers+peft loop (full logits, mean loss, no masking tricks) on the same data."""
    import warnings

    import torch
    from peft import LoraConfig, get_peft_model

    from shoal.learn.base import load_base
    from shoal.learn.train import encode, template_of

    base, tok = load_base(home, gguf)
    enc = [encode(e["messages"], tok, template_of(tok), 384) for e in examples if e["split"] == "train"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = get_peft_model(base, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    tokens, t0 = 0, time.perf_counter()
    for step in range(steps):
        ex = enc[step % len(enc)]
        ids = torch.tensor([ex.ids])
        labels = ids.clone()
        labels[0, : ex.n_prompt] = -100
        model(input_ids=ids, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
        tokens += len(ex.ids)
    return tokens / (time.perf_counter() - t0)


def extraction_figures(home: Path, gguf: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train the extraction adapter as `shoal learn extraction` does; score base and tuned on the labelled set."""
    from shoal.backends.embedded import EmbeddedBackend
    from shoal.learn.extraction import default_labelled, read_labelled, score_sets, train_extraction
    from shoal.learn.train import TrainConfig

    items = read_labelled(default_labelled())
    cfg = TrainConfig(rank=args.rank, alpha=2.0 * args.rank, lr=args.extraction_lr, epochs=1.0, batch=4,
                      max_tokens=160, threads=args.threads)
    t0 = time.perf_counter()
    result = train_extraction(home, gguf, home / "extraction-run", cfg, n_train=args.extraction_examples,
                              progress=lambda s, t, loss, note: print(f"  extraction step {s}/{t} loss {loss:.3f}" if loss is not None else f"  {note}", flush=True))
    train_s = time.perf_counter() - t0
    adapter = str(home / "extraction-run" / "adapter.gguf")

    async def score() -> tuple[dict[str, Any], dict[str, Any]]:
        backend = EmbeddedBackend("local", model_path=gguf)
        try:
            return await score_sets(backend, items), await score_sets(backend, items, adapter=adapter)
        finally:
            await backend.aclose()

    t1 = time.perf_counter()
    base, tuned = asyncio.run(score())
    for side, sets in (("base", base), ("tuned", tuned)):
        for row in sets["all"].wrong[:10]:
            print(f"   {side} wrong: {row}")
    out = {"extract_train_examples": args.extraction_examples, "extract_train_steps": result.steps,
           "extract_train_s": round(train_s, 1), "extract_eval_s": round(time.perf_counter() - t1, 1),
           "extract_messages": len(items)}
    for side, sets in (("base", base), ("tuned", tuned)):
        out[f"extract_recall_{side}"] = round(sets["all"].recall, 3)
        out[f"extract_precision_{side}"] = round(sets["all"].precision, 3)
        for name in ("messages", "heldout"):
            if name in sets:
                out[f"extract_{name}_recall_{side}"] = round(sets[name].recall, 3)
                out[f"extract_{name}_precision_{side}"] = round(sets[name].precision, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=("style", "extraction"), default=None, help="run one part (default: both)")
    ap.add_argument("--extraction-examples", type=int, default=240, help="generated messages the extraction adapter trains on")
    ap.add_argument("--extraction-lr", type=float, default=2e-3)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.only == "extraction":
        from shoal.engine.llama import default_model_path

        home = Path(tempfile.mkdtemp(prefix="shoal-learn-bench-"))
        figures = extraction_figures(home, default_model_path(), args)
        print(" ".join(f"{k}: {v}" for k, v in figures.items()))
        return
    from shoal.engine.llama import default_model_path
    from shoal.learn.adapters import AdapterRegistry
    from shoal.learn.base import gguf_fingerprint
    from shoal.learn.evaluate import EngineEvaluator, canary_set
    from shoal.learn.train import TrainConfig, train

    home = Path(tempfile.mkdtemp(prefix="shoal-learn-bench-"))
    gguf = default_model_path()
    ev = EngineEvaluator(gguf, threads=args.threads)
    examples, counts = asyncio.run(scripted_dataset(home, ev))
    print("dataset:", json.dumps(counts))
    canary = canary_set()
    cfg = TrainConfig(rank=args.rank, alpha=2.0 * args.rank, lr=args.lr, epochs=args.epochs, batch=2, threads=args.threads)
    t0 = time.perf_counter()
    result = train(home, gguf, examples, home / "run", cfg, canary=canary,
                   progress=lambda s, t, loss, note: print(f"  step {s}/{t} loss {loss:.3f}" if loss is not None else f"  {note}", flush=True))
    print(f"trained {result.steps} steps in {time.perf_counter() - t0:.0f}s, {result.tokens_per_second:.0f} tok/s")
    peft_tok_s = peft_loop_tok_s(home, gguf, examples, steps=min(8, result.steps * 2), rank=args.rank)

    reg = AdapterRegistry(home, "conversation")
    val = [e for e in examples if e["split"] == "val"]
    version = reg.add_candidate(home / "run", val)
    decision = reg.promote(version, ev, canary, base_fingerprint=gguf_fingerprint(gguf))
    print("promote:", decision.promoted, decision.reason)

    def style(adapter: Path | None) -> float:
        ev.use(adapter)
        ok = 0
        for q, first in HELD_OUT:
            reply = ev.generate([{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}])
            ok += styled(reply, first)
            print(f"   {'tuned' if adapter else 'base '} {q!r} -> {reply!r}")
        return ok / len(HELD_OUT)

    style_base = style(None)
    style_tuned = style(reg.path_of(version))
    ev.use(None)
    ev.close()
    figures = {
        "examples_train": counts["train"], "examples_val": counts["val"],
        "train_tok_s": round(result.tokens_per_second, 1), "peft_loop_tok_s": round(peft_tok_s, 1),
        "val_loss_base": round(decision.current["val_loss"] or 0, 3), "val_loss_tuned": round(decision.candidate["val_loss"] or 0, 3),
        "canary_loss_base": round(decision.current["canary_loss"] or 0, 3),
        "canary_loss_tuned": round(decision.candidate["canary_loss"] or 0, 3),
        "style_base": round(style_base, 2), "style_tuned": round(style_tuned, 2), "promoted": int(decision.promoted),
    }
    if args.only != "style":
        figures.update(extraction_figures(home, gguf, args))
    print(" ".join(f"{k}: {v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
