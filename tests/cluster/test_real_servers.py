"""The cluster over real llama.cpp servers and the embedded engine: routing, health,
failover mid-stream, cancellation, and servers added and removed by editing shoal.toml."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shoal.backends.base import generate
from shoal.backends.embedded import EmbeddedBackend
from shoal.backends.llamacpp import LlamaCppBackend
from shoal.cluster import Cluster
from shoal.errors import GenerationCancelled, NotFound
from shoal.types import ChatMessage, Chunk, GenerateRequest, SamplingParams

from .conftest import SmallLlamaServer, config, config_text, entry, llama_entry, wait_until
from .conftest import collect as _collect

Pair = tuple[SmallLlamaServer, SmallLlamaServer]


def req(text: str = "Say hi.", max_tokens: int = 4, model: str | None = "smollm2-135m") -> GenerateRequest:
    # repeat_penalty 1: llama.cpp applies it to generated tokens only, so a continuation
    # (where earlier output is prompt) would otherwise sample differently
    return GenerateRequest(
        messages=[ChatMessage("user", text)],
        model=model,
        sampling=SamplingParams(max_tokens=max_tokens, temperature=0.0, repeat_penalty=1.0),
    )


async def collect(cluster: Cluster, r: GenerateRequest, prefer: str | None = None) -> list[Chunk]:
    return await _collect(cluster, r, prefer, timeout=120)  # real servers on 2 shared cores


async def test_affinity_sends_the_next_request_to_the_least_loaded_warm_server(llama_pair: Pair, model_path: Path) -> None:
    a, b = llama_pair
    cfg = config(llama_entry("a", a, model_path, max_concurrent=2), llama_entry("b", b, model_path, max_concurrent=2))
    async with Cluster(cfg) as cluster:
        held = cluster.stream(req("Count to twenty.", max_tokens=64), prefer="a")
        first = await anext(held)
        assert first.served_by == "a" and cluster.members["a"].in_flight == 1
        out = await collect(cluster, req())
        assert out[-1].served_by == "b"
        await held.aclose()
        assert cluster.members["a"].in_flight == 0


async def test_least_loaded_spreads_concurrent_requests_over_every_server(
    llama_pair: Pair, model_path: Path, embedded: EmbeddedBackend
) -> None:
    a, b = llama_pair
    cfg = config(
        llama_entry("a", a, model_path), llama_entry("b", b, model_path), entry("local", "embedded"),
        strategy="least-loaded",
    )
    async with Cluster(cfg, backends={"local": embedded}) as cluster:
        results = await asyncio.gather(*(collect(cluster, req(f"Say {w}.")) for w in ("one", "two", "three")))
    assert sorted(r[-1].served_by or "" for r in results) == ["a", "b", "local"]
    assert all(r[-1].finish_reason in ("stop", "length") for r in results)


async def test_round_robin_takes_the_servers_in_turn(llama_pair: Pair, model_path: Path, embedded: EmbeddedBackend) -> None:
    a, b = llama_pair
    cfg = config(
        llama_entry("a", a, model_path), llama_entry("b", b, model_path), entry("local", "embedded"),
        strategy="round-robin",
    )
    async with Cluster(cfg, backends={"local": embedded}) as cluster:
        served = [(await generate(cluster, req(max_tokens=2))).served_by for _ in range(4)]
    assert served == ["a", "b", "local", "a"]


async def test_a_request_or_a_bot_can_prefer_a_server(llama_pair: Pair, model_path: Path, embedded: EmbeddedBackend) -> None:
    a, b = llama_pair
    cfg = config(llama_entry("a", a, model_path), llama_entry("b", b, model_path), entry("local", "embedded"))
    async with Cluster(cfg, backends={"local": embedded}) as cluster:
        assert (await collect(cluster, req(), prefer="b"))[-1].served_by == "b"
        # a bot's backend is a view preferring its server; no model means the server's own
        assert (await generate(cluster.view("local"), req(model=None))).served_by == "local"
        with pytest.raises(NotFound, match="no server named 'nowhere'"):
            await collect(cluster, req(), prefer="nowhere")


async def test_a_model_no_server_offers_is_a_clear_not_found(llama_pair: Pair, model_path: Path) -> None:
    a, _ = llama_pair
    async with Cluster(config(llama_entry("a", a, model_path))) as cluster:
        with pytest.raises(NotFound, match="no server in the cluster offers the model 'llama-70b'") as e:
            await collect(cluster, req(model="llama-70b"))
        assert e.value.hint and "shoal cluster status" in e.value.hint


async def test_health_checks_notice_a_dead_server_and_its_return(
    llama_pair: Pair, spare_llama: SmallLlamaServer, model_path: Path
) -> None:
    a, _ = llama_pair
    cfg = config(llama_entry("a", a, model_path), llama_entry("c", spare_llama, model_path), health_timeout=2)
    async with Cluster(cfg) as cluster:
        assert cluster.members["c"].health == "up"
        spare_llama.kill()
        await cluster.check_health()
        c = next(s for s in cluster.status()["servers"] if s["name"] == "c")
        assert c["health"] == "down" and c["last_error"]
        # the preferred server is down: the request goes to one that is up
        assert (await collect(cluster, req(), prefer="c"))[-1].served_by == "a"
        spare_llama.restart()
        await cluster.check_health()
        assert cluster.members["c"].health == "up"
        assert (await collect(cluster, req(), prefer="c"))[-1].served_by == "c"


async def test_a_server_killed_mid_stream_the_stream_continues_on_another_without_a_seam(
    llama_pair: Pair, spare_llama: SmallLlamaServer, model_path: Path
) -> None:
    _, b = llama_pair
    prompt = "Write a short story about a cat who learns to fly."
    # what one server writes, uninterrupted (greedy: deterministic)
    direct = LlamaCppBackend("ref", b.url, model_path=str(model_path))
    reference = (await generate(direct, req(prompt, max_tokens=60))).text
    await direct.aclose()

    cfg = config(llama_entry("d", spare_llama, model_path), llama_entry("b", b, model_path))
    async with Cluster(cfg) as cluster:
        chunks: list[Chunk] = []
        async with asyncio.timeout(120):
            async for chunk in cluster.stream(req(prompt, max_tokens=60), prefer="d"):
                chunks.append(chunk)
                if len(chunks) == 8:
                    spare_llama.kill()
        text = "".join(c.text for c in chunks)
        servers = [c.served_by for c in chunks]
        assert servers[0] == "d" and servers[-1] == "b"
        # one stream: the part from d, then b's continuation of it, nothing repeated or lost
        cut = servers.index("b")
        assert cut >= 8
        assert text == reference
        assert chunks[-1].finish_reason == "length" and chunks[-1].completion_tokens == 60
        assert all(c.finish_reason is None for c in chunks[:-1])
        assert cluster.members["d"].health == "down"
        assert cluster.status()["totals"]["failovers"] == 1


async def test_closing_the_stream_or_cancelling_the_request_stops_the_generation(embedded: EmbeddedBackend) -> None:
    engine = embedded.engine
    assert engine is not None
    async with Cluster(config(entry("local", "embedded")), backends={"local": embedded}) as cluster:
        before = engine.stats.cancelled
        stream = cluster.stream(req("Write a long story about the sea.", max_tokens=300))
        for _ in range(3):
            await anext(stream)
        await stream.aclose()  # the consumer went away
        await wait_until(lambda: engine.stats.cancelled > before and engine.active == 0)
        assert cluster.members["local"].in_flight == 0

        r = req("Write a long story about the sea.", max_tokens=300)
        with pytest.raises(GenerationCancelled):
            async with asyncio.timeout(60):
                async for i, _ in _enumerate(cluster.stream(r)):
                    if i == 2:
                        r.cancel.cancel("test")
        await wait_until(lambda: engine.active == 0)


async def _enumerate(stream):  # type: ignore[no-untyped-def]
    i = 0
    async for x in stream:
        yield i, x
        i += 1


async def test_servers_added_disabled_and_removed_in_shoal_toml_take_effect_without_a_restart(
    llama_pair: Pair, model_path: Path, tmp_path: Path
) -> None:
    a, b = llama_pair
    path = tmp_path / "shoal.toml"
    settings = {"health_interval": 0, "reload_interval": 0.05}
    path.write_text(config_text(llama_entry("a", a, model_path), **settings))
    from shoal.config import load_config

    async with Cluster(load_config(path), config_path=path) as cluster:
        assert set(cluster.members) == {"a"}

        path.write_text(config_text(llama_entry("a", a, model_path), llama_entry("b", b, model_path), **settings))
        await wait_until(lambda: "b" in cluster.members and cluster.members["b"].health == "up")
        assert (await collect(cluster, req(), prefer="b"))[-1].served_by == "b"

        path.write_text(
            config_text(llama_entry("a", a, model_path), llama_entry("b", b, model_path, enabled=False), **settings)
        )
        await wait_until(lambda: not cluster.members["b"].enabled)
        assert (await collect(cluster, req(), prefer="b"))[-1].served_by == "a"

        path.write_text(config_text(llama_entry("a", a, model_path), **settings))
        await wait_until(lambda: "b" not in cluster.members)
        with pytest.raises(NotFound):
            await collect(cluster, req(), prefer="b")

        # a broken edit is reported with file, line and field; the cluster keeps serving
        broken = config_text(llama_entry("a", a, model_path), entry("x", "nonsense", "http://127.0.0.1:1"), **settings)
        path.write_text(broken)
        error = await wait_until(lambda: cluster.status()["reload"]["error"])
        line = next(i for i, l in enumerate(broken.splitlines(), 1) if 'kind = "nonsense"' in l)
        assert f"{path}:{line}" in error and "servers.1.kind" in error
        assert set(cluster.members) == {"a"}
        assert (await collect(cluster, req()))[-1].served_by == "a"
