"""Export a trained µLM to GGUF (the ``gguf`` package's writer) for llama.cpp and the engine.

The model is llama.cpp's ``llama`` architecture, so this is a renaming:

    embed.weight                 -> token_embd.weight    (also the output matrix: tied, no output.weight)
    blocks.N.attn_norm.weight    -> blk.N.attn_norm.weight
    blocks.N.attn.wq|wk|wv|wo    -> blk.N.attn_q|attn_k|attn_v|attn_output.weight
    blocks.N.ffn_norm.weight     -> blk.N.ffn_norm.weight
    blocks.N.ffn.gate|up|down    -> blk.N.ffn_gate|ffn_up|ffn_down.weight
    norm.weight                  -> output_norm.weight

q and k need no permutation: the model rotates adjacent pairs, as llama.cpp's
``llama`` RoPE does (HF checkpoints rotate halves, hence their converter's
permute). The tokenizer goes in as a GPT-2-style BPE with the ``smollm``
pre-tokenizer (digits one by one, then GPT-2's regex), which is exactly how
``shoal.ulm.tokenizer`` splits text. Tensors are float32: a µLM is a few MB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shoal.ulm import checkpoint

_NAMES = {
    "attn_norm.weight": "attn_norm.weight",
    "attn.wq.weight": "attn_q.weight",
    "attn.wk.weight": "attn_k.weight",
    "attn.wv.weight": "attn_v.weight",
    "attn.wo.weight": "attn_output.weight",
    "ffn_norm.weight": "ffn_norm.weight",
    "ffn.gate.weight": "ffn_gate.weight",
    "ffn.up.weight": "ffn_up.weight",
    "ffn.down.weight": "ffn_down.weight",
}


def gguf_name(name: str) -> str:
    if name == "embed.weight":
        return "token_embd.weight"
    if name == "norm.weight":
        return "output_norm.weight"
    _, layer, rest = name.split(".", 2)  # blocks.N.rest
    return f"blk.{layer}.{_NAMES[rest]}"


def export(run: Path, out: Path | None = None) -> Path:
    """Write ``run``/model.gguf (or ``out``) from the run's checkpoint; returns the path."""
    import gguf

    loaded = checkpoint.load(run)
    cfg, tok = loaded.model.cfg, loaded.tokenizer
    out = out or run / "model.gguf"
    w = gguf.GGUFWriter(str(out), "llama")
    w.add_name(f"ulm-{loaded.meta.get('name', run.name)}")
    w.add_description(f"µLM trained by shoal: {cfg.n_layer}x{cfg.n_embd}, {loaded.model.n_params()} params")
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_context_length(cfg.block_size)
    w.add_embedding_length(cfg.n_embd)
    w.add_block_count(cfg.n_layer)
    w.add_feed_forward_length(cfg.ffn_hidden)
    w.add_head_count(cfg.n_head)
    w.add_head_count_kv(cfg.n_head)
    w.add_layer_norm_rms_eps(cfg.norm_eps)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_vocab_size(tok.vocab_size)

    tokens, merges = tok.vocab_and_merges()
    types = [gguf.TokenType.CONTROL if i == tok.eot_id else gguf.TokenType.NORMAL for i in range(len(tokens))]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(types)
    # llama.cpp refuses a gpt2 vocabulary without merges (the "char" tokenizer has none). "1 2" can
    # never fire: the pre-tokenizer puts every digit in a piece of its own, so tokenization is unchanged
    w.add_token_merges(merges or ["1 2"])
    w.add_bos_token_id(tok.eot_id)
    w.add_eos_token_id(tok.eot_id)
    w.add_add_bos_token(False)  # trained without a BOS: each document is just followed by <|endoftext|>

    for name, tensor in loaded.model.state_dict().items():
        w.add_tensor(gguf_name(name), tensor.detach().float().numpy().astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def llama_logits(gguf_path: Path, ids: list[int], *, threads: int = 1) -> np.ndarray:
    """llama.cpp's logits (T, V) for ``ids`` in one batch: what the export test compares with torch."""
    from shoal.engine.llama import Context, Model

    model = Model(gguf_path)
    ctx = Context(model, n_ctx_seq=max(len(ids), 32), n_seq_max=1, n_batch=max(len(ids), 32), n_threads=threads)
    try:
        status = ctx.decode([(t, i, 0, True) for i, t in enumerate(ids)])
        if status != 0:
            raise RuntimeError(f"llama_decode returned {status}")
        rows = []
        for i in range(len(ids)):
            ptr = model._lib.llama_get_logits_ith(ctx.ptr, i)
            rows.append(np.ctypeslib.as_array(ptr, shape=(model.n_vocab,)).copy())
        return np.stack(rows)
    finally:
        ctx.close()
        model.close()
