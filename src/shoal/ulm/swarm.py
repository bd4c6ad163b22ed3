"""Swarm search in the engine: N samples of one goal decoded together by the embedded llama.cpp engine.

The same protocol as ``search.rollout``, served from the exported GGUF: each
sample is a request at background priority with the stop string
``</calc>``; when a sample stops on a tool call, the harness appends
``</calc>=RESULT`` and the sample goes on as a new request whose prompt
shares its prefix with the old one (the engine reuses those KV cells). The
engine decodes the N live samples in one batch per step.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from shoal.ulm.harness.base import CALL_CLOSE, CALL_OPEN, Task, get_env, run_tools
from shoal.ulm.search import Candidate
from shoal.ulm.tokenizer import ULMTokenizer


async def _one(engine: object, tok: ULMTokenizer, prompt: str, *, temperature: float, max_new: int, seed: int) -> Candidate:
    from shoal.types import GenerateRequest, Priority, SamplingParams

    text, used = "", 0
    while used < max_new:
        sp = SamplingParams(
            max_tokens=max_new - used, temperature=temperature, top_k=0, top_p=1.0, min_p=0.0,
            repeat_penalty=1.0, seed=seed, stop=(CALL_CLOSE,),
        )
        req = GenerateRequest(messages=[], sampling=sp, priority=Priority.THINKING, owner="ulm-swarm")
        parts: list[str] = []
        generated = 0
        async for chunk in engine.stream(req, tok.encode(prompt + text)):  # type: ignore[attr-defined]
            parts.append(chunk.text)
            if chunk.finish_reason:
                generated = chunk.completion_tokens or 0
        piece = "".join(parts)
        used += max(1, generated)
        # stopped on "</calc>" (the stop string is not in the output): an open call at the end
        if piece.rfind(CALL_OPEN) > piece.rfind(CALL_CLOSE) and used < max_new:
            text += piece + CALL_CLOSE
            text += run_tools(text) or ""
            continue
        text += piece
        break
    # the trace ends with its answer line (a model may ramble on after it)
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.startswith("A:"):
            text = "".join(lines[: i + 1])
            break
    return Candidate(text, used)


async def engine_candidates(
    gguf: Path, tok: ULMTokenizer, task: Task, *, n: int, temperature: float = 1.0, max_new: int = 128, seed: int = 0,
    threads: int = 1,
) -> list[Candidate]:
    """N verified-scored candidates for ``task`` from the µLM served by a fresh embedded engine."""
    from shoal.config import EngineConfig
    from shoal.engine.llama import Model
    from shoal.engine.scheduler import Engine

    model = await asyncio.to_thread(Model, gguf)
    engine = Engine(model, EngineConfig(threads=threads, context=256, max_sequences=max(2, n + 1)), name="ulm-swarm")
    try:
        cands = await asyncio.gather(
            *(_one(engine, tok, task.prompt, temperature=temperature, max_new=max_new, seed=seed + i) for i in range(n))
        )
    finally:
        await asyncio.to_thread(engine.close)
        model.close()
    env = get_env(task.env)
    for c in cands:
        c.verdict = env.verify(task, c.text)
    return list(cands)


async def engine_sample_many(
    gguf: Path, tok: ULMTokenizer, prompts: list[str], *, n: int, temperature: float = 1.0, max_new: int = 128,
    seed: int = 0, threads: int = 1, parallel: int = 32,
) -> list[list[Candidate]]:
    """``n`` candidates for each prompt from one engine, ``parallel`` sequences decoded together."""
    from shoal.config import EngineConfig
    from shoal.engine.llama import Model
    from shoal.engine.scheduler import Engine

    model = await asyncio.to_thread(Model, gguf)
    engine = Engine(
        model, EngineConfig(threads=threads, context=256, max_sequences=parallel + 1, max_pending=len(prompts) * n + 1),
        name="ulm-swarm",
    )
    gate = asyncio.Semaphore(parallel)

    async def one(k: int, prompt: str) -> Candidate:
        async with gate:
            return await _one(engine, tok, prompt, temperature=temperature, max_new=max_new, seed=seed + k)

    try:
        flat = await asyncio.gather(*(one(k, p) for k, p in enumerate(p for p in prompts for _ in range(n))))
    finally:
        await asyncio.to_thread(engine.close)
        model.close()
    return [list(flat[i * n : (i + 1) * n]) for i in range(len(prompts))]
