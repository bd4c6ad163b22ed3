"""The embedded engine on the real SmolLM2-135M model."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from shoal.backends.base import generate
from shoal.backends.embedded import EmbeddedBackend
from shoal.config import EngineConfig
from shoal.errors import CapacityError, ContextOverflow, GenerationCancelled
from shoal.types import ChatMessage, GenerateRequest, Priority, SamplingParams

COUNT = "Count from 1 to 400, separated by commas."


def req(text: str, *, prio: Priority = Priority.FOREGROUND, max_tokens: int = 32, temperature: float = 0.0, **kw) -> GenerateRequest:  # type: ignore[no-untyped-def]
    return GenerateRequest(
        messages=[ChatMessage("user", text)],
        priority=prio,
        sampling=SamplingParams(max_tokens=max_tokens, temperature=temperature, **kw),
    )


def counting(*, prio: Priority = Priority.THINKING, max_tokens: int = 300) -> GenerateRequest:
    """A request that reliably runs to max_tokens: the model keeps counting."""
    r = req(COUNT, prio=prio, max_tokens=max_tokens, repeat_penalty=1.0)
    r.prefix = "1, 2, 3, 4, 5, 6,"
    return r


async def test_a_foreground_request_streams_while_four_background_sequences_are_mid_generation(embedded: EmbeddedBackend) -> None:
    progress = [0, 0, 0, 0]
    finished: list[float] = []

    async def background(i: int) -> None:
        async for chunk in embedded.stream(counting()):
            if chunk.text:
                progress[i] += 1
        finished.append(time.monotonic())

    tasks = [asyncio.create_task(background(i)) for i in range(4)]
    # wait until every background sequence is producing tokens
    async with asyncio.timeout(60):
        while min(progress) < 5:
            await asyncio.sleep(0.01)
    first_token_at = None
    async with asyncio.timeout(60):
        async for chunk in embedded.stream(req("Say hello.", max_tokens=8)):
            if chunk.text and first_token_at is None:
                first_token_at = time.monotonic()
                snapshot = list(progress)
    assert first_token_at is not None
    assert not finished, "a background sequence finished before the foreground's first token"
    assert all(5 <= p < 300 for p in snapshot), snapshot
    async with asyncio.timeout(120):
        await asyncio.gather(*tasks)
    assert len(finished) == 4


async def test_greedy_output_is_identical_alone_and_batched_with_others(embedded: EmbeddedBackend) -> None:
    prompt = "Name three colours of the rainbow."
    alone = (await generate(embedded, req(prompt, max_tokens=24))).text

    async def other(text: str) -> str:
        return (await generate(embedded, req(text, prio=Priority.THINKING, max_tokens=40))).text

    others = [asyncio.create_task(other(t)) for t in ("Tell me about cats.", "Count to ten.", "What is rain?")]
    await asyncio.sleep(0.05)
    batched = (await generate(embedded, req(prompt, max_tokens=24))).text
    await asyncio.gather(*others)
    assert alone and batched == alone


async def test_a_cancelled_sequence_frees_its_slot_and_reports_cancellation(embedded: EmbeddedBackend) -> None:
    engine = embedded.engine
    assert engine is not None
    r = counting()
    got = 0
    with pytest.raises(GenerationCancelled):
        async for chunk in embedded.stream(r):
            got += 1
            if got == 5:
                r.cancel.cancel("test")
    assert engine.active == 0
    # and the engine carries on
    assert (await generate(embedded, req("Say yes.", max_tokens=4))).text


async def test_a_consumer_that_stops_reading_cancels_its_sequence(embedded: EmbeddedBackend) -> None:
    engine = embedded.engine
    assert engine is not None
    r = counting(prio=Priority.FOREGROUND)
    stream = embedded.stream(r)
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    assert r.cancel.cancelled
    async with asyncio.timeout(10):
        while engine.active:
            await asyncio.sleep(0.01)


async def test_stop_strings_end_the_output_before_the_stop_text(embedded: EmbeddedBackend) -> None:
    r = counting(prio=Priority.FOREGROUND, max_tokens=60)
    r.sampling.stop = ("12,",)
    out = await generate(embedded, r)
    assert out.finish_reason == "stop"
    assert out.text.strip() == "7, 8, 9, 10, 11,"


async def test_max_tokens_ends_with_length(embedded: EmbeddedBackend) -> None:
    out = await generate(embedded, counting(prio=Priority.FOREGROUND, max_tokens=5))
    assert out.finish_reason == "length"
    assert out.completion_tokens == 5


async def test_json_schema_output_is_valid_json_of_that_schema(embedded: EmbeddedBackend) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    r = req("Bob is 42 years old. Reply with JSON giving his name and age.", max_tokens=40)
    r.json_schema = schema
    data = json.loads((await generate(embedded, r)).text)
    assert isinstance(data["name"], str) and isinstance(data["age"], int)


async def test_a_prompt_longer_than_the_context_fails_that_request_only(embedded: EmbeddedBackend) -> None:
    with pytest.raises(ContextOverflow):
        await generate(embedded, req("word " * 3000))
    assert (await generate(embedded, req("Say ok.", max_tokens=4))).text


async def test_a_full_queue_fails_fast_with_a_capacity_error(model_path) -> None:  # type: ignore[no-untyped-def]
    backend = EmbeddedBackend("tiny", model_path=model_path, engine=EngineConfig(max_sequences=1, max_pending=1, context=1024))
    try:
        long_req = counting(prio=Priority.FOREGROUND, max_tokens=200)
        first = asyncio.create_task(generate(backend, long_req))
        engine = await backend.start()
        async with asyncio.timeout(30):
            while engine.active == 0:
                await asyncio.sleep(0.01)
        queued = asyncio.create_task(generate(backend, req("Say a.", max_tokens=2)))
        await asyncio.sleep(0.05)
        with pytest.raises(CapacityError):
            await generate(backend, req("Say b.", max_tokens=2))
        long_req.cancel.cancel()
        with pytest.raises(GenerationCancelled):
            await first
        assert (await queued).text is not None
    finally:
        await backend.aclose()


async def test_a_shared_prompt_prefix_is_reused_not_recomputed(embedded: EmbeddedBackend) -> None:
    engine = embedded.engine
    assert engine is not None
    system = "You are a careful assistant who answers questions about geography. " * 4
    before = engine.stats.prompt_tokens_reused
    for q in ("What is the capital of Spain?", "What is the capital of Italy?"):
        r = GenerateRequest(
            messages=[ChatMessage("system", system), ChatMessage("user", q)],
            sampling=SamplingParams(max_tokens=4, temperature=0),
        )
        await generate(embedded, r)
    assert engine.stats.prompt_tokens_reused - before >= 40


async def test_min_tokens_keeps_generating_past_the_natural_end(embedded: EmbeddedBackend) -> None:
    short = await generate(embedded, req("What is 2+2?", max_tokens=60))
    assert short.finish_reason == "stop" and short.completion_tokens < 40
    r = req("What is 2+2?", max_tokens=60)
    r.sampling.min_tokens = 40
    out = await generate(embedded, r)
    assert out.completion_tokens >= 40


# -- isolation: one request's trouble stays with that request ----------------------

THOUGHTS = ("Tell me about cats.", "What is rain?", "Describe a busy market in the morning.")


async def thought(backend: EmbeddedBackend, text: str, *, max_tokens: int = 32) -> str:
    return (await generate(backend, req(text, prio=Priority.THINKING, max_tokens=max_tokens))).text


async def test_a_background_sequence_paused_for_foreground_prompts_gives_the_same_greedy_output(
    embedded: EmbeddedBackend,
) -> None:
    alone = await thought(embedded, THOUGHTS[2], max_tokens=40)
    background = asyncio.create_task(thought(embedded, THOUGHTS[2], max_tokens=40))
    # long foreground prompts pause the background sequence while they are read
    for i in range(3):
        await generate(embedded, req(f"Question {i}: " + "Describe the sea in great detail. " * 30, max_tokens=4))
    async with asyncio.timeout(60):
        assert await background == alone


async def test_more_requests_than_sequences_wait_for_a_slot_and_give_their_own_output(model_path) -> None:  # type: ignore[no-untyped-def]
    backend = EmbeddedBackend("two", model_path=model_path, engine=EngineConfig(max_sequences=2, max_pending=8, context=512))
    try:
        prompts = [*THOUGHTS, "Name a fruit.", "Count to five."]
        alone = [(await generate(backend, req(p, max_tokens=16))).text for p in prompts]
        async with asyncio.timeout(120):
            together = await asyncio.gather(*(generate(backend, req(p, max_tokens=16)) for p in prompts))
        # a reused slot starts from a clean KV stream
        assert [c.text for c in together] == alone
        engine = backend.engine
        assert engine is not None and engine.active == 0 and engine.pending == 0
    finally:
        await backend.aclose()


async def test_an_over_long_prompt_fails_alone_while_other_sequences_carry_on(embedded: EmbeddedBackend) -> None:
    progress = [0, 0]

    async def background(i: int):  # type: ignore[no-untyped-def]
        parts = []
        async for chunk in embedded.stream(counting(max_tokens=60)):
            progress[i] += 1
            parts.append(chunk)
        return parts[-1]

    tasks = [asyncio.create_task(background(i)) for i in range(2)]
    async with asyncio.timeout(60):
        while min(progress) < 3:
            await asyncio.sleep(0.01)
    with pytest.raises(ContextOverflow, match="context holds"):
        await generate(embedded, req("word " * 3000))
    async with asyncio.timeout(120):
        lasts = await asyncio.gather(*tasks)
    assert [(c.finish_reason, c.completion_tokens) for c in lasts] == [("length", 60), ("length", 60)]


async def test_a_generation_that_reaches_the_end_of_its_context_stops_with_length(model_path) -> None:  # type: ignore[no-untyped-def]
    backend = EmbeddedBackend("small", model_path=model_path, engine=EngineConfig(context=256, max_sequences=2))
    try:
        long_req = counting(prio=Priority.FOREGROUND, max_tokens=1000)
        neighbour = asyncio.create_task(thought(backend, THOUGHTS[0], max_tokens=24))
        out = await generate(backend, long_req)
        assert out.finish_reason == "length"
        assert out.prompt_tokens + out.completion_tokens <= 256
        assert out.completion_tokens > 100
        async with asyncio.timeout(60):
            assert await neighbour == await thought(backend, THOUGHTS[0], max_tokens=24)
    finally:
        await backend.aclose()


async def test_a_sequence_cancelled_mid_generation_leaves_its_neighbours_output_unchanged(embedded: EmbeddedBackend) -> None:
    engine = embedded.engine
    assert engine is not None
    alone = [await thought(embedded, t) for t in THOUGHTS]
    victim = counting(max_tokens=200)

    async def cancelled() -> int:
        got = 0
        with pytest.raises(GenerationCancelled):
            async for _ in embedded.stream(victim):
                got += 1
                if got == 3:
                    # the engine thread is already decoding the next step
                    victim.cancel.cancel("test")
        return got

    async with asyncio.timeout(120):
        got, *together = await asyncio.gather(cancelled(), *(thought(embedded, t) for t in THOUGHTS))
    assert got < 200
    assert together == alone
    async with asyncio.timeout(10):
        while engine.active:
            await asyncio.sleep(0.01)


async def test_live_sequences_take_the_lowest_ids_so_a_decode_step_is_one_pass(embedded: EmbeddedBackend) -> None:
    """llama.cpp decodes a run of consecutive sequence ids in one pass (docs/engine.md)."""
    engine = embedded.engine
    assert engine is not None
    for t in THOUGHTS:  # sequences come and go first
        await thought(embedded, t, max_tokens=4)
    progress = [0, 0, 0, 0]

    async def background(i: int) -> None:
        async for _ in embedded.stream(counting(max_tokens=40)):
            progress[i] += 1

    tasks = [asyncio.create_task(background(i)) for i in range(4)]
    async with asyncio.timeout(60):
        while min(progress) < 3:
            await asyncio.sleep(0.01)
    ids = sorted(s.seq_id for s in list(engine._active))
    async with asyncio.timeout(120):
        await asyncio.gather(*tasks)
    assert ids == [0, 1, 2, 3]


async def test_the_conversation_prefix_survives_a_churn_of_finished_thoughts(embedded: EmbeddedBackend) -> None:
    engine = embedded.engine
    assert engine is not None
    persona = "You are shoal, a calm assistant who helps one person plan their week. " * 3
    thinker = "You think quietly in the background about what the person needs next. " * 3

    def turn(q: str, system: str, prio: Priority) -> GenerateRequest:
        return GenerateRequest(
            messages=[ChatMessage("system", system), ChatMessage("user", q)],
            priority=prio,
            sampling=SamplingParams(max_tokens=4, temperature=0),
        )

    await generate(embedded, turn("What should I do on Monday?", persona, Priority.FOREGROUND))
    # more finished thoughts than a cache of `prefix_cache` whole sequences held
    for i in range(engine.config.prefix_cache + 2):
        await generate(embedded, turn(f"Thought {i}: plan the week.", thinker, Priority.THINKING))
    before = engine.stats.prompt_tokens_reused
    await generate(embedded, turn("And on Tuesday?", persona, Priority.FOREGROUND))
    assert engine.stats.prompt_tokens_reused - before >= 40
