"""Ollama, LM Studio, vLLM and llama-server adapters against protocol fixtures
(real HTTP on loopback, documented endpoints and shapes; see fixtures.py).

These servers cannot run on this machine; the fixtures check that shoal speaks
their APIs as documented: residency, load/unload with LRU eviction, memory-based
choice, continuation of a partial answer.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from shoal.backends.lmstudio import LMStudioBackend
from shoal.backends.ollama import OllamaBackend
from shoal.cluster import Cluster
from shoal.errors import CapacityError
from shoal.types import ChatMessage, GenerateRequest, SamplingParams

from .conftest import collect, config, entry, started, wait_until
from .fixtures import GIB, FakeServer, LlamaServerFixture, LMStudioFixture, OllamaFixture, VLLMFixture


def req(model: str | None, max_tokens: int = 12) -> GenerateRequest:
    return GenerateRequest(
        messages=[ChatMessage("user", "hi")], model=model, sampling=SamplingParams(max_tokens=max_tokens)
    )


async def test_ollama_residency_comes_from_api_ps_and_api_tags(fakes: list[FakeServer]) -> None:
    o = started(fakes, OllamaFixture({"llama3.2:latest": 2 * GIB, "qwen2.5:0.5b": GIB}, loaded=["qwen2.5:0.5b"]))
    b = OllamaBackend("o", o.url)
    res = await b.residency(timeout=5)
    assert set(res.loaded) == {"qwen2.5:0.5b"} and res.loaded["qwen2.5:0.5b"].size_bytes == GIB
    assert res.available == {"llama3.2:latest": 2 * GIB, "qwen2.5:0.5b": GIB}
    assert b.canonical("llama3.2") == "llama3.2:latest"
    await b.aclose()


async def test_affinity_prefers_the_warm_server_then_the_one_with_most_free_memory(fakes: list[FakeServer]) -> None:
    models = {"a:latest": 4 * GIB, "b:latest": 4 * GIB, "c:latest": 4 * GIB}
    small = started(fakes, OllamaFixture(models, loaded=["a:latest"]))
    big = started(fakes, OllamaFixture(models, loaded=[]))
    cfg = config(entry("small", "ollama", small.url, memory_gb=6), entry("big", "ollama", big.url, memory_gb=16))
    async with Cluster(cfg) as cluster:
        # "a" is warm on the small server: it goes there although the big one has more room
        assert (await collect(cluster, req("a")))[-1].served_by == "small"
        # "b" is warm nowhere: the big server has the most free memory; shoal loads it there
        assert (await collect(cluster, req("b")))[-1].served_by == "big"
        loads = [r.body for r in big.calls("/api/generate")]
        assert loads == [{"model": "b:latest", "keep_alive": -1, "stream": False}]
        assert "b:latest" in cluster.members["big"].residency.loaded  # type: ignore[union-attr]
        status = next(s for s in cluster.status()["servers"] if s["name"] == "big")
        assert status["memory"] == {"capacity_bytes": 16 * GIB, "used_bytes": 4 * GIB}


async def test_a_load_evicts_the_least_recently_used_idle_model_never_a_serving_one(fakes: list[FakeServer]) -> None:
    models = {"a:latest": 3 * GIB, "b:latest": 3 * GIB, "c:latest": 3 * GIB, "d:latest": 3 * GIB}
    o = started(fakes, OllamaFixture(models, loaded=["a:latest", "b:latest", "d:latest"]))
    o.behaviour.gate = threading.Event()
    async with Cluster(config(entry("o", "ollama", o.url, memory_gb=10, max_concurrent=4))) as cluster:
        o.behaviour.gate.set()
        # used in this order: a is the least recently used, d the most recently used idle one
        for m in ("a", "d", "b"):
            await collect(cluster, req(m))
        # b, used last of all, is now serving a request: it must stay
        o.behaviour.gate.clear()
        serving_b = asyncio.create_task(collect(cluster, req("b")))
        await wait_until(lambda: o.in_flight == 1)
        # c needs 3 of the 10 GiB: one model must go — the idle one used longest ago (a), not d
        wants_c = asyncio.create_task(collect(cluster, req("c")))
        await wait_until(lambda: "c:latest" in o.loaded)
        o.behaviour.gate.set()
        await serving_b
        assert (await wants_c)[-1].served_by == "o"
        unloads = [r.body["model"] for r in o.calls("/api/generate") if r.body.get("keep_alive") == 0]
        assert unloads == ["a:latest"]
        assert set(o.loaded) == {"b:latest", "c:latest", "d:latest"}
        assert cluster.members["o"].counters.evictions == 1


async def test_a_load_waits_while_every_loaded_model_is_serving(fakes: list[FakeServer]) -> None:
    models = {"a:latest": 5 * GIB, "b:latest": 5 * GIB}
    o = started(fakes, OllamaFixture(models, loaded=["a:latest"]))
    o.behaviour.gate = threading.Event()
    async with Cluster(config(entry("o", "ollama", o.url, memory_gb=6, max_concurrent=4))) as cluster:
        serving_a = asyncio.create_task(collect(cluster, req("a")))
        await wait_until(lambda: o.in_flight == 1)
        wants_b = asyncio.create_task(collect(cluster, req("b")))
        await wait_until(lambda: cluster.members["o"].waiting_for_memory)
        # nothing evictable: no unload has been sent, the load is queued
        assert not [r for r in o.calls("/api/generate") if r.body.get("keep_alive") == 0]
        assert cluster.status()["servers"][0]["in_flight"] == 2
        o.behaviour.gate.set()
        await serving_a
        out = await wants_b
        assert out[-1].served_by == "o"
        calls = [(r.body["model"], r.body.get("keep_alive")) for r in o.calls("/api/generate")]
        assert calls == [("a:latest", 0), ("b:latest", -1)]


async def test_a_model_larger_than_the_server_is_refused_with_a_hint(fakes: list[FakeServer]) -> None:
    o = started(fakes, OllamaFixture({"huge:latest": 40 * GIB}))
    async with Cluster(config(entry("o", "ollama", o.url, memory_gb=8))) as cluster:
        with pytest.raises(CapacityError, match="does not fit server 'o'") as e:
            await collect(cluster, req("huge"))
        assert e.value.hint and "memory_gb" in e.value.hint


async def test_memory_strategy_picks_the_server_with_most_free_memory(fakes: list[FakeServer]) -> None:
    models = {"m:latest": GIB}
    full = started(fakes, OllamaFixture({**models, "x:latest": 6 * GIB}, loaded=["x:latest", "m:latest"]))
    empty = started(fakes, OllamaFixture(models, loaded=["m:latest"]))
    cfg = config(entry("full", "ollama", full.url, memory_gb=8), entry("empty", "ollama", empty.url, memory_gb=8), strategy="memory")
    async with Cluster(cfg) as cluster:
        assert (await collect(cluster, req("m")))[-1].served_by == "empty"


async def test_lm_studio_v1_lists_loads_and_unloads_by_instance_id(fakes: list[FakeServer]) -> None:
    lm = started(fakes, LMStudioFixture({"qwen/qwen3-4b": 3 * GIB, "google/gemma-3-1b": GIB}, loaded=["google/gemma-3-1b"]))
    b = LMStudioBackend("lm", lm.url)
    res = await b.residency(timeout=5)
    assert set(res.loaded) == {"google/gemma-3-1b"} and res.available["qwen/qwen3-4b"] == 3 * GIB
    assert "nomic-embed" not in res.available  # embedding models are not chat models
    assert res.slots == 2 and b.can_load
    await b.load("qwen/qwen3-4b")
    instance = lm.instances["qwen/qwen3-4b"]
    await b.unload("qwen/qwen3-4b")
    assert lm.calls("/api/v1/models/unload")[-1].body == {"instance_id": instance}
    assert "qwen/qwen3-4b" not in lm.instances
    await b.aclose()


async def test_lm_studio_evicts_through_the_cluster(fakes: list[FakeServer]) -> None:
    lm = started(fakes, LMStudioFixture({"big": 5 * GIB, "other": 5 * GIB}, loaded=["big"]))
    async with Cluster(config(entry("lm", "lmstudio", lm.url, memory_gb=8))) as cluster:
        assert (await collect(cluster, req("other")))[-1].served_by == "lm"
    assert set(lm.instances) == {"other"}
    assert [r.body for r in lm.calls("/api/v1/models/load")] == [{"model": "other"}]


async def test_lm_studio_without_the_v1_api_reads_residency_from_v0(fakes: list[FakeServer]) -> None:
    lm = started(fakes, LMStudioFixture({"a": GIB, "b": GIB}, loaded=["b"], v1=False))
    b = LMStudioBackend("lm", lm.url)
    res = await b.residency(timeout=5)
    assert set(res.loaded) == {"b"} and set(res.available) == {"a", "b"} and not b.can_load
    await b.aclose()


async def test_vllm_serves_its_one_model_and_continues_a_partial_answer_exactly(fakes: list[FakeServer]) -> None:
    dying = started(fakes, LlamaServerFixture())
    dying.behaviour.die_after = 3
    vllm = started(fakes, VLLMFixture())
    vllm.behaviour.words = [" rest", " of", " it"]
    cfg = config(
        entry("dying", "llamacpp", dying.url, models=["qwen"]),
        entry("vllm", "vllm", vllm.url, models=["qwen"]),
    )
    async with Cluster(cfg) as cluster:
        assert cluster.members["vllm"].resolve("qwen") == VLLMFixture.model_name
        chunks = await collect(cluster, req("qwen", max_tokens=12), prefer="dying")
    text = "".join(c.text for c in chunks)
    assert text == " w0 w1 w2 rest of it"
    # tokens that arrive in one read travel as one chunk: count them, not the chunks
    served = [(c.served_by, c.text, c.tokens) for c in chunks if c.text]
    assert "".join(t for s, t, _ in served if s == "dying") == " w0 w1 w2"
    assert [s for s, _, _ in served] == sorted((s for s, _, _ in served), key=["dying", "vllm"].index)
    assert sum(n for s, _, n in served if s == "dying") == 3 and sum(n for s, _, n in served if s == "vllm") == 3
    body = vllm.calls("/v1/chat/completions")[-1].body
    assert body["model"] == VLLMFixture.model_name
    assert body["messages"][-1] == {"role": "assistant", "content": " w0 w1 w2"}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["max_tokens"] == 9  # what was left of the 12


async def test_llama_server_reports_slots_and_continues_through_v1_completions(fakes: list[FakeServer]) -> None:
    ls = started(fakes, LlamaServerFixture(slots=4, busy=1))
    dying = started(fakes, OllamaFixture({"qwen:latest": GIB}, loaded=["qwen:latest"]))
    dying.behaviour.die_after = 2
    cfg = config(entry("ollama", "ollama", dying.url, models=["qwen"]), entry("ls", "llamacpp", ls.url, models=["qwen"]))
    async with Cluster(cfg) as cluster:
        m = cluster.members["ls"]
        assert m.max_concurrent == 4 and m.residency and m.residency.busy == 1
        assert m.residency.software == "llama-server" and m.continuation == "completion"
        chunks = await collect(cluster, req("qwen"), prefer="ollama")
    assert "".join(c.text for c in chunks).startswith(" w0 w1 w0")
    prompt = ls.calls("/v1/completions")[-1].body["prompt"]
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n w0 w1"


async def test_ollama_continuation_sends_the_partial_answer_as_a_trailing_assistant_message(fakes: list[FakeServer]) -> None:
    dying = started(fakes, VLLMFixture())
    dying.behaviour.die_after = 2
    o = started(fakes, OllamaFixture({"m:latest": GIB}, loaded=["m:latest"]))
    cfg = config(entry("v", "vllm", dying.url, models=["m"]), entry("o", "ollama", o.url))
    async with Cluster(cfg) as cluster:
        chunks = await collect(cluster, req("m"), prefer="v")
    assert chunks[-1].served_by == "o"
    body = o.calls("/v1/chat/completions")[-1].body
    assert body["model"] == "m:latest" and body["messages"][-1] == {"role": "assistant", "content": " w0 w1"}
