"""One contract, every backend: the embedded engine and a real llama.cpp server."""

from __future__ import annotations

import asyncio
import json
from typing import AsyncIterator

import pytest

from shoal.backends.base import Backend, generate
from shoal.backends.embedded import EmbeddedBackend
from shoal.backends.openai_http import OpenAIHTTPBackend
from shoal.errors import BackendUnavailable, GenerationCancelled, NotFound
from shoal.types import ChatMessage, GenerateRequest, SamplingParams

from ..conftest import LlamaServer, free_port


@pytest.fixture(params=["embedded", "llamacpp-http"])
async def backend(request: pytest.FixtureRequest, embedded: EmbeddedBackend) -> AsyncIterator[Backend]:
    if request.param == "embedded":
        yield embedded
        return
    server: LlamaServer = request.getfixturevalue("llama_server")
    b = OpenAIHTTPBackend("box", server.url, kind="llamacpp")
    yield b
    await b.aclose()


def req(text: str, max_tokens: int = 24) -> GenerateRequest:
    return GenerateRequest(
        messages=[ChatMessage("system", "You are terse."), ChatMessage("user", text)],
        sampling=SamplingParams(max_tokens=max_tokens, temperature=0.0),
    )


async def test_stream_yields_text_and_ends_with_a_finish_reason(backend: Backend) -> None:
    chunks = [c async for c in backend.stream(req("Name a fruit."))]
    assert chunks and chunks[-1].finish_reason in ("stop", "length")
    assert "".join(c.text for c in chunks).strip()
    assert all(c.finish_reason is None for c in chunks[:-1])


async def test_generate_is_the_joined_stream(backend: Backend) -> None:
    out = await generate(backend, req("Count to five: 1, 2,", max_tokens=12))
    assert out.text.strip()
    assert out.finish_reason in ("stop", "length")
    assert out.served_by == backend.name


async def test_max_tokens_is_honoured(backend: Backend) -> None:
    out = await generate(backend, req("Count from 1 to 100: 1, 2, 3,", max_tokens=6))
    assert out.finish_reason == "length"


async def test_cancel_mid_stream_raises_generation_cancelled(backend: Backend) -> None:
    r = req("Write a long story about a dragon.", max_tokens=300)
    n = 0
    with pytest.raises(GenerationCancelled):
        async with asyncio.timeout(60):
            async for chunk in backend.stream(r):
                n += 1
                if n == 3:
                    r.cancel.cancel("test")
    assert n < 50


async def test_json_schema_constrains_the_output(backend: Backend) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 30}, "sunny": {"type": "boolean"}},
        "required": ["city", "sunny"],
    }
    r = req("It is sunny in Leeds today. Answer in JSON.", max_tokens=40)
    r.json_schema = schema
    data = json.loads((await generate(backend, r)).text)
    assert set(data) == {"city", "sunny"} and isinstance(data["sunny"], bool)


async def test_models_lists_what_the_backend_serves(backend: Backend) -> None:
    models = await backend.models()
    assert models and all(isinstance(m, str) and m for m in models)


async def test_close_then_a_new_backend_still_works(backend: Backend, llama_server: LlamaServer) -> None:
    if isinstance(backend, EmbeddedBackend):
        fresh: Backend = EmbeddedBackend("fresh")
    else:
        fresh = OpenAIHTTPBackend("fresh", llama_server.url, kind="llamacpp")
    out = await generate(fresh, req("Say hi.", max_tokens=4))
    await fresh.aclose()
    assert out.text


async def test_an_unreachable_server_is_a_clear_backend_unavailable_error() -> None:
    b = OpenAIHTTPBackend("gone", f"http://127.0.0.1:{free_port()}", kind="llamacpp", timeout=5)
    with pytest.raises(BackendUnavailable, match="cannot reach server 'gone'"):
        await generate(b, req("hi"))
    await b.aclose()


async def test_an_embedded_backend_refuses_a_model_it_does_not_serve(embedded: EmbeddedBackend) -> None:
    r = req("hi")
    r.model = "llama-70b"
    with pytest.raises(NotFound, match="serves 'smollm2-135m'"):
        await generate(embedded, r)


async def test_cancelling_a_stream_stops_the_llama_cpp_server_generating(llama_server: LlamaServer) -> None:
    """Not only does the client stop reading: the server stops computing (its CPU falls idle)."""
    import psutil

    server = psutil.Process(llama_server.proc.pid)
    b = OpenAIHTTPBackend("box", llama_server.url, kind="llamacpp")
    try:
        r = req("Write a very long story about a dragon who learns to sail.", max_tokens=1500)
        busy_from = server.cpu_times()
        n = 0
        with pytest.raises(GenerationCancelled):
            async with asyncio.timeout(120):
                async for _chunk in b.stream(r):
                    n += 1
                    if n == 5:
                        busy = server.cpu_times()
                        r.cancel.cancel("test")
        assert (busy.user + busy.system) - (busy_from.user + busy_from.system) > 0  # it was working
        await asyncio.sleep(1.5)  # what was already in flight finishes
        before = server.cpu_times()
        await asyncio.sleep(3.0)
        after = server.cpu_times()
        # a long story takes tens of seconds at one thread: a server still generating would burn ~3 s of CPU here
        assert (after.user + after.system) - (before.user + before.system) < 0.5
    finally:
        await b.aclose()
