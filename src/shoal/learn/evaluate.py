"""Evaluation in what is served: target-token loss computed by llama.cpp, with or without an adapter.

The engine's own tokeniser and chat template render each example exactly as a
reply would be prompted; the loss covers the target tokens only (the same mask
as training). Two sets matter:

* the held-out validation split of the person's dataset (did it learn *them*?);
* a fixed canary set of general prompts shipped with shoal (``data/learn_canary.jsonl``)
  — did it forget how to be generally useful?
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from shoal.errors import BadInput


@dataclass(frozen=True)
class Scores:
    val_loss: float | None
    canary_loss: float | None

    def as_dict(self) -> dict[str, float | None]:
        return {"val_loss": self.val_loss, "canary_loss": self.canary_loss}


def canary_set() -> list[dict[str, Any]]:
    """The fixed canary examples shipped with shoal."""
    text = resources.files("shoal").joinpath("data/learn_canary.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _encode(model: Any, template: str, messages: Sequence[dict[str, str]]) -> tuple[list[int], int]:
    from shoal.engine.chat import render
    from shoal.types import ChatMessage

    msgs = [ChatMessage(m["role"], m["content"]) for m in messages]  # type: ignore[arg-type]
    prompt = render(template, msgs[:-1], add_generation_prompt=True)
    full = render(template, msgs, add_generation_prompt=False)
    if not full.startswith(prompt):
        raise BadInput("the chat template does not put the reply after the prompt")
    target = full[len(prompt):].rstrip("\n")
    p_ids = model.tokenize(prompt, add_special=True, parse_special=True)
    t_ids = model.tokenize(target, add_special=False, parse_special=True)
    return p_ids + t_ids, len(p_ids)


class EngineEvaluator:
    """One llama.cpp model and context for scoring adapters (1 thread: it runs beside the chat)."""

    def __init__(self, gguf: Path, *, threads: int = 1, n_ctx: int = 1024, yield_to_foreground: bool = False) -> None:
        from shoal.engine.llama import Context, Model

        #: wait between examples while a person's reply is being written (a background run beside the chat)
        self.yield_to_foreground = yield_to_foreground
        self.paused_seconds = 0.0
        self.model = Model(gguf)
        self.ctx = Context(self.model, n_ctx_seq=n_ctx, n_seq_max=1, n_batch=512, n_threads=threads)
        self.template = self.model.template_for(None)
        self._adapters: list[Any] = []

    def use(self, adapter: Path | None, *, base_fingerprint: str | None = None) -> None:
        """Score with ``adapter`` from now on (None: the base model)."""
        from shoal.engine.lora import LoraAdapter, set_adapters

        if adapter is None:
            set_adapters(self.ctx, [])
            return
        ad = LoraAdapter(self.model, adapter, base_fingerprint=base_fingerprint)
        self._adapters.append(ad)
        set_adapters(self.ctx, [ad])

    def loss(self, examples: Sequence[dict[str, Any]], *, max_tokens: int = 384) -> float | None:
        """Mean target-token cross-entropy over ``examples`` (None for none)."""
        import numpy as np

        from shoal.engine.lora import sequence_logits

        if not examples:
            return None
        total, n = 0.0, 0
        for e in examples:
            if self.yield_to_foreground:
                from shoal.learn.train import wait_for_foreground

                self.paused_seconds += wait_for_foreground()
            ids, n_prompt = _encode(self.model, self.template, e["messages"])
            if len(ids) > max_tokens:  # keep the target, cut the oldest prompt tokens
                cut = len(ids) - max_tokens
                ids, n_prompt = ids[cut:], max(1, n_prompt - cut)
            logits = sequence_logits(self.ctx, ids[:-1], first=n_prompt - 1)  # (n_target, V)
            labels = np.asarray(ids[n_prompt:])
            top = logits.max(axis=1, keepdims=True)
            logz = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
            total += float((logz - logits[np.arange(len(labels)), labels]).sum())
            n += len(labels)
        return total / max(1, n)

    def generate(self, messages: Sequence[dict[str, str]], *, max_tokens: int = 48) -> str:
        """The greedy reply to ``messages`` (ending with the person's turn) under the current adapter."""
        import numpy as np

        from shoal.engine.chat import render
        from shoal.engine.lora import sequence_logits
        from shoal.types import ChatMessage

        prompt = render(self.template, [ChatMessage(m["role"], m["content"]) for m in messages])  # type: ignore[arg-type]
        ids = self.model.tokenize(prompt, add_special=True, parse_special=True)
        out: list[int] = []
        logits = sequence_logits(self.ctx, ids, first=len(ids) - 1, keep=True)
        for _ in range(max_tokens):
            tok = int(np.argmax(logits[-1]))
            if self.model.is_eog(tok):
                break
            out.append(tok)
            logits = _next_logits(self.ctx, tok, len(ids) + len(out) - 1)
        self.ctx.seq_rm(0)
        return self.model.detokenize(out).strip()

    def scores(self, val: Sequence[dict[str, Any]], canary: Sequence[dict[str, Any]]) -> Scores:
        return Scores(self.loss(val), self.loss(canary))

    def close(self) -> None:
        from shoal.engine.lora import set_adapters

        if self.ctx.ptr:
            set_adapters(self.ctx, [])
        self.ctx.close()
        for a in self._adapters:
            a.close()
        self.model.close()


def _next_logits(ctx: Any, token: int, pos: int) -> Any:
    import numpy as np

    from shoal.errors import ModelError

    if ctx.decode([(token, pos, 0, True)]) != 0:
        raise ModelError("llama_decode failed while generating")
    ptr = ctx._lib.llama_get_logits_ith(ctx.ptr, 0)
    return np.ctypeslib.as_array(ptr, shape=(ctx.model.n_vocab,)).copy()[None, :]
