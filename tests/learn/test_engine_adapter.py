"""The embedded engine serves adapters: per request, grouped per batch, a bad file never breaks a reply."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from shoal.config import EngineConfig
from shoal.engine import chat
from shoal.engine.llama import Model, default_model_path
from shoal.engine.scheduler import Engine
from shoal.learn.train import TrainResult
from shoal.types import ChatMessage, GenerateRequest, Priority, SamplingParams


async def reply(engine: Engine, model: Model, text: str, adapter: str = "", priority: Priority = Priority.FOREGROUND) -> str:
    prompt = chat.render(model.template_for(None), [ChatMessage("system", "You are shoal."), ChatMessage("user", text)])
    req = GenerateRequest(
        messages=[], sampling=SamplingParams(max_tokens=10, temperature=0.0), adapter=adapter, priority=priority
    )
    parts = [c.text async for c in engine.stream(req, model.tokenize(prompt))]
    return "".join(parts)


def test_sequences_with_different_adapters_each_get_what_they_would_alone(
    trained: tuple[TrainResult, TrainResult, list[str]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, second, _ = trained
    adapter = str(second.run_dir / "adapter.gguf")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF but not really" * 4)
    model = Model(default_model_path())
    engine = Engine(model, EngineConfig(max_sequences=4, context=512, threads=1), name="adapters")

    async def run() -> tuple[str, str, tuple[str, ...], str]:
        base = await reply(engine, model, "What is the capital of Italy?")
        tuned = await reply(engine, model, "What is the capital of Italy?", adapter)
        together = await asyncio.gather(
            reply(engine, model, "What is the capital of Italy?"),
            reply(engine, model, "What is the capital of Italy?", adapter, Priority.THINKING),
            reply(engine, model, "What is the capital of Italy?", adapter),
        )
        with caplog.at_level(logging.ERROR, logger="shoal.engine.scheduler"):
            fallback = await reply(engine, model, "What is the capital of Italy?", str(broken))
        return base, tuned, tuple(together), fallback

    try:
        base, tuned, together, fallback = asyncio.run(run())
        switches = engine.stats.adapter_switches
    finally:
        engine.close()
        model.close()
    assert together == (base, tuned, tuned)
    assert switches >= 3  # the three were never in one batch with different adapters
    # a broken adapter file: the reply still comes, from the base model, and the log says why
    assert fallback == base
    assert any("not served" in r.getMessage() and "broken.gguf" in r.getMessage() for r in caplog.records)


def test_a_bot_asks_for_the_promoted_adapter_and_a_rollback_takes_effect_at_the_next_reply(
    trained: tuple[TrainResult, TrainResult, list[str]], home: Path
) -> None:
    from shoal.learn.adapters import AdapterRegistry
    from shoal.runtime.bot import served_adapter

    _, second, _ = trained
    reg = AdapterRegistry(home, "conversation")
    assert served_adapter("conversation", "latest") == ""  # nothing promoted: the base model
    assert served_adapter("conversation", "") == ""
    assert served_adapter("conversation", "v0042") == ""  # unknown version: logged, base model
    version = reg.add_candidate(second.run_dir, [])
    reg._write_served({"current": version, "history": [""]})
    assert served_adapter("conversation", "latest") == str(home / "learn/adapters/conversation" / version / "adapter.gguf")
    assert served_adapter("conversation", version) == served_adapter("conversation", "latest")
    reg.rollback()
    assert served_adapter("conversation", "latest") == ""
