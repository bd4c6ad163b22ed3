"""LoRA adapters in llama.cpp: load a GGUF adapter, check it fits, apply it to a context.

Adapters apply per context (and so per batch): every sequence decoded in one
``llama_decode`` uses the same adapter set. The engine therefore switches its
adapter only between steps with no sequence in flight, and drops its prefix
cache when it does (cells computed under one adapter are wrong under another).
Switching is cheap (a pointer swap); what costs is decoding with an adapter
(20–35 % per step measured, DESIGN.md §4).
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path
from typing import Any, Sequence

from shoal.engine.llama import Context, Model, made
from shoal.errors import ModelError

log = logging.getLogger(__name__)

FINGERPRINT_KEY = "shoal.base.fingerprint"


def read_adapter_meta(path: Path) -> dict[str, Any]:
    """The metadata of a GGUF LoRA adapter; ``ModelError`` for a file that is not one."""
    import gguf

    if not path.is_file():
        raise ModelError(f"adapter file not found: {path}", hint="`shoal learn status` lists the adapters there are")
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:  # gguf raises ValueError, IndexError, struct errors... for a damaged file
        raise ModelError(
            f"{path} is not a readable GGUF adapter ({type(exc).__name__}: {exc})",
            hint="the file is damaged: `shoal learn rollback` serves the previous adapter; retrain to replace it",
        ) from exc
    meta: dict[str, Any] = {}
    for key in ("general.architecture", "general.type", "adapter.type", "adapter.lora.alpha", FINGERPRINT_KEY):
        f = reader.fields.get(key)
        if f is None:
            continue
        value = f.parts[f.data[0]]
        is_str = bool(f.types) and f.types[0] == gguf.GGUFValueType.STRING
        meta[key] = bytes(value).decode("utf-8") if is_str else float(value[0])
    if meta.get("general.type") != "adapter" or meta.get("adapter.type") != "lora":
        raise ModelError(f"{path} is a GGUF file but not a LoRA adapter", hint="pass the adapter.gguf of a training run")
    meta["tensors"] = len(reader.tensors)
    return meta


def model_meta(model: Model, key: str) -> str | None:
    """A string from the model's GGUF metadata (None when absent)."""
    buf = ctypes.create_string_buffer(256)
    n = model._lib.llama_model_meta_val_str(model.ptr, key.encode(), buf, 256)
    return buf.value.decode("utf-8", "replace") if n >= 0 else None


class LoraAdapter:
    """A GGUF LoRA loaded against one model (freed with it, or by ``close``)."""

    def __init__(self, model: Model, path: str | Path, *, base_fingerprint: str | None = None, scale: float = 1.0) -> None:
        self.path = Path(path)
        self.meta = read_adapter_meta(self.path)
        got = self.meta.get(FINGERPRINT_KEY)
        if base_fingerprint and got and got != base_fingerprint:
            raise ModelError(
                f"{self.path} was trained for another base model ({got}), not the one served ({base_fingerprint})",
                hint="retrain it on this model with `shoal learn train`, or serve the model it was made for",
            )
        arch = model_meta(model, "general.architecture")
        if arch and self.meta.get("general.architecture") not in (None, arch):
            raise ModelError(
                f"{self.path} is an adapter for a '{self.meta['general.architecture']}' model; the served one is '{arch}'",
                hint="retrain it on the served model",
            )
        lib = model._lib
        ptr = made(
            lib.llama_adapter_lora_init(model.ptr, str(self.path).encode()),
            f"llama.cpp refused the adapter {self.path} (its tensors do not fit this model)",
            "it was made for a different base model: retrain it with `shoal learn train`",
        )
        self._lib = lib
        self.ptr = ptr
        self.scale = scale

    def close(self) -> None:
        if self.ptr:
            self._lib.llama_adapter_lora_free(self.ptr)
            self.ptr = None


def set_adapters(ctx: Context, adapters: Sequence[LoraAdapter]) -> None:
    """Make ``adapters`` the context's adapter set (an empty sequence: the base model)."""
    lib = ctx._lib
    if not adapters:
        status = lib.llama_set_adapters_lora(ctx.ptr, None, 0, None)
    else:
        ptrs = (lib.llama_adapter_lora_p_ctypes * len(adapters))(*[a.ptr for a in adapters])
        scales = (ctypes.c_float * len(adapters))(*[a.scale for a in adapters])
        status = lib.llama_set_adapters_lora(ctx.ptr, ptrs, len(adapters), scales)
    if status != 0:
        raise ModelError(f"llama.cpp could not set the adapters (status {status})")


def sequence_logits(ctx: Context, ids: Sequence[int], *, seq: int = 0, first: int = 0, keep: bool = False) -> Any:
    """Logits (n, n_vocab) for positions ``first..len(ids)-1`` of ``ids`` decoded fresh in ``seq``.

    Evaluation, not serving: it owns the context while it runs. ``keep`` leaves the KV cells
    in place (to continue decoding after ``ids``).
    """
    import numpy as np

    lib = ctx._lib
    n_vocab = ctx.model.n_vocab
    ctx.seq_rm(seq)
    rows = []
    for start in range(0, len(ids), ctx.n_batch):
        chunk = ids[start : start + ctx.n_batch]
        items = [(t, start + i, seq, start + i >= first) for i, t in enumerate(chunk)]
        status = ctx.decode(items)
        if status != 0:
            raise ModelError(f"llama_decode failed with status {status} while evaluating")
        for i in range(len(chunk)):
            if start + i >= first:
                ptr = lib.llama_get_logits_ith(ctx.ptr, i)
                rows.append(np.ctypeslib.as_array(ptr, shape=(n_vocab,)).copy())
    if not keep:
        ctx.seq_rm(seq)
    return np.stack(rows) if rows else np.zeros((0, n_vocab), dtype=np.float32)
