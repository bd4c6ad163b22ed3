"""Training speed of shoal's µLM against transformers' LlamaForCausalLM, and nanoGPT's char recipe.

1. Same shape (the smoke recipe's 4x128 llama, BPE-1024), same batches of
   Shakespeare, same AdamW loop, same threads, alternating in one run:
   tokens/s of ``shoal.ulm.model.ULM`` over ``LlamaForCausalLM`` (sdpa).
2. The character-level nanoGPT CPU recipe (``char``: 4 layers, 4 heads, 128
   wide, block 64, batch 12, 2000 iterations); its validation loss (nanoGPT
   reports 1.88 on the 1 MB tiny-shakespeare; this corpus is the 42 plays).

    PYTHONPATH=src nice -n 15 .venv/bin/python bench/ulm_train.py [--char-iters 2000] [--steps 30]

Last line: ``tok_s_vs_transformers: X char_val_loss: Y ...``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def speed(steps: int, threads: int) -> tuple[float, float]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from shoal.ulm.data import batch, documents, encode
    from shoal.ulm.model import ULM
    from shoal.ulm.recipe import load_recipe
    from shoal.ulm.train import model_config
    from shoal.ulm.tokenizer import train_bpe

    torch.set_num_threads(threads)
    r = load_recipe("smoke")
    r.data.max_chars = 1_000_000
    docs = documents(r.data, Path(os.environ.get("SHOAL_HOME", Path.home() / ".shoal")) / "ulm" / "corpus")
    tok = train_bpe(docs, r.data.vocab_size)
    data = encode(docs, tok)
    cfg = model_config(r, tok.vocab_size)
    ours = ULM(cfg)
    hf_cfg = LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.n_embd, intermediate_size=cfg.ffn_hidden,
        num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head, num_key_value_heads=cfg.n_head,
        max_position_embeddings=cfg.block_size, rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta,
        tie_word_embeddings=True, attention_bias=False, mlp_bias=False,
    )
    hf_cfg._attn_implementation = "sdpa"
    theirs = LlamaForCausalLM(hf_cfg)
    print(f"params: ours {ours.n_params():,}, transformers {sum(p.numel() for p in theirs.parameters()):,}")

    def step_ours(x, y):  # type: ignore[no-untyped-def]
        return ours(x, y)[1]

    def step_theirs(x, y):  # type: ignore[no-untyped-def]
        return theirs(input_ids=x, labels=x).loss  # HF shifts labels itself: same next-token objective

    opts = {
        "ours": (ours, step_ours, torch.optim.AdamW(ours.parameters(), lr=1e-3)),
        "transformers": (theirs, step_theirs, torch.optim.AdamW(theirs.parameters(), lr=1e-3)),
    }
    elapsed = {k: 0.0 for k in opts}
    gen = torch.Generator().manual_seed(0)
    tokens = r.train.batch_size * r.model.block_size
    for i in range(steps + 3):
        x, y = batch(data, r.model.block_size, r.train.batch_size, gen)
        order = list(opts) if i % 2 == 0 else list(opts)[::-1]  # alternate: neither always runs on a warm cache
        for name in order:
            model, fn, opt = opts[name]
            t0 = time.perf_counter()
            loss = fn(x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i >= 3:  # warm-up steps not counted
                elapsed[name] += time.perf_counter() - t0
    return steps * tokens / elapsed["ours"], steps * tokens / elapsed["transformers"]


def char_loss(iters: int, threads: int) -> tuple[float, float]:
    from shoal.ulm.recipe import load_recipe
    from shoal.ulm.train import train

    r = load_recipe("char")
    r.train.iters = iters
    r.train.eval_every = min(r.train.eval_every, iters)
    r.train.eval_iters = 200  # nanoGPT estimates val loss over 200 batches
    home = Path(os.environ.get("SHOAL_HOME", Path.home() / ".shoal"))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = train(r, Path(tmp) / "char", threads=threads, cache=home / "ulm" / "corpus")
        return res.val_loss, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--char-iters", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    ours, theirs = speed(a.steps, a.threads)
    print(f"training tokens/s at {a.threads} thread(s): ours {ours:,.0f}, transformers {theirs:,.0f}")
    val, secs = char_loss(a.char_iters, a.threads)
    print(f"char recipe: val loss {val:.3f} after {a.char_iters} iterations in {secs:.0f} s (nanoGPT: 1.88 on tiny shakespeare)")
    print(
        f"tok_s_vs_transformers: {ours / theirs:.2f} tok_s: {ours:.0f} tok_s_transformers: {theirs:.0f} "
        f"char_val_loss: {val:.3f} char_iters: {a.char_iters} char_seconds: {secs:.0f}"
    )


if __name__ == "__main__":
    main()
