"""Priority queue with aging, admission limits, fail-fast when full, retries, circuit breaker, metrics."""

from __future__ import annotations

import asyncio
import threading

import pytest

from shoal.cluster import Cluster, QueueFull
from shoal.cluster.breaker import Breaker
from shoal.cluster.queue import AdmissionQueue, Ticket
from shoal.cluster.status import prometheus
from shoal.errors import BackendUnavailable, CapacityError, ShoalError
from shoal.types import ChatMessage, GenerateRequest, Priority, SamplingParams

from .conftest import collect, config, entry, started, wait_until
from .fixtures import FakeServer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def req(priority: Priority = Priority.FOREGROUND, rank: int = 0, model: str | None = None) -> GenerateRequest:
    return GenerateRequest(
        messages=[ChatMessage("user", "hi")], model=model, sampling=SamplingParams(max_tokens=4), priority=priority, rank=rank
    )


async def test_the_queue_orders_by_priority_then_rank_and_ages_waiting_requests() -> None:
    clock = Clock()
    q = AdmissionQueue(max_queue=10, aging=10.0, clock=clock)
    loop = asyncio.get_running_loop()

    def ticket(r: GenerateRequest) -> Ticket:
        t = Ticket(r, None, None, frozenset(), clock(), loop.create_future())
        q.push(t)
        return t

    thinking = ticket(req(Priority.THINKING))
    memory = ticket(req(Priority.MEMORY))
    fg_low = ticket(req(Priority.FOREGROUND, rank=0))
    fg_high = ticket(req(Priority.FOREGROUND, rank=5))
    assert q.ordered() == [fg_high, fg_low, memory, thinking]
    # the thinker has waited 31 s: three classes up, ahead of a foreground request that just came
    clock.now += 31
    fresh = ticket(req(Priority.FOREGROUND))
    assert q.ordered().index(thinking) < q.ordered().index(fresh)


async def test_a_full_queue_fails_fast_with_a_capacity_error_and_a_hint() -> None:
    clock = Clock()
    q = AdmissionQueue(max_queue=1, aging=10.0, clock=clock)
    loop = asyncio.get_running_loop()
    q.push(Ticket(req(), None, None, frozenset(), clock(), loop.create_future()))
    with pytest.raises(QueueFull) as e:
        q.push(Ticket(req(), None, None, frozenset(), clock(), loop.create_future()))
    assert isinstance(e.value, CapacityError) and isinstance(e.value, ShoalError)
    assert e.value.hint and "max_queue" in e.value.hint
    assert q.dropped == 1 and q.pending == 1


async def test_requests_wait_for_a_slot_foreground_first_and_overflow_is_refused(fakes: list[FakeServer]) -> None:
    s = started(fakes, FakeServer())
    s.behaviour.gate = threading.Event()
    async with Cluster(config(entry("s", "openai", s.url, max_concurrent=1), max_queue=2)) as cluster:
        order: list[str] = []

        async def run(name: str, r: GenerateRequest) -> None:
            await collect(cluster, r)
            order.append(name)

        first = asyncio.create_task(run("first", req(Priority.FOREGROUND)))
        await wait_until(lambda: s.in_flight == 1)
        background = asyncio.create_task(run("background", req(Priority.THINKING)))
        await wait_until(lambda: cluster.queue.pending == 1)
        foreground = asyncio.create_task(run("foreground", req(Priority.FOREGROUND)))
        await wait_until(lambda: cluster.queue.pending == 2)
        assert cluster.status()["queue"]["depth"] == 2
        assert cluster.status()["servers"][0]["queued"] == 2
        # the queue is full: the next request is refused at once
        with pytest.raises(QueueFull, match="2 requests are already waiting"):
            await collect(cluster, req())
        s.behaviour.gate.set()
        await asyncio.gather(first, background, foreground)
        assert order == ["first", "foreground", "background"]
        assert cluster.queue.dropped == 1


async def test_a_cancelled_request_leaves_the_queue(fakes: list[FakeServer]) -> None:
    s = started(fakes, FakeServer())
    s.behaviour.gate = threading.Event()
    async with Cluster(config(entry("s", "openai", s.url, max_concurrent=1))) as cluster:
        first = asyncio.create_task(collect(cluster, req()))
        await wait_until(lambda: s.in_flight == 1)
        waiting = req()
        task = asyncio.create_task(collect(cluster, waiting))
        await wait_until(lambda: cluster.queue.pending == 1)
        waiting.cancel.cancel("changed my mind")
        with pytest.raises(ShoalError, match="changed my mind"):
            await task
        assert cluster.queue.pending == 0
        s.behaviour.gate.set()
        await first
        assert cluster.members["s"].in_flight == 0


async def test_a_failure_before_the_first_token_is_retried_on_another_server(fakes: list[FakeServer]) -> None:
    bad, good = started(fakes, FakeServer()), started(fakes, FakeServer())
    bad.behaviour.fail_status = 503
    async with Cluster(config(entry("bad", "openai", bad.url), entry("good", "openai", good.url))) as cluster:
        chunks = await collect(cluster, req(), prefer="bad")
        assert {c.served_by for c in chunks} == {"good"}
        assert "".join(c.text for c in chunks) == " w0 w1 w2 w3"
        assert cluster.status()["totals"]["retries"] == 1
        assert len(bad.calls("/v1/chat/completions")) == 1
        # it answered (with an error): not down, one strike on its circuit
        assert cluster.members["bad"].health == "up" and cluster.members["bad"].breaker.failures == 1


async def test_retries_are_bounded_and_the_error_says_what_failed(fakes: list[FakeServer]) -> None:
    servers = [started(fakes, FakeServer()) for _ in range(3)]
    for s in servers:
        s.behaviour.fail_status = 502
    entries = [entry(f"s{i}", "openai", s.url) for i, s in enumerate(servers)]
    async with Cluster(config(*entries, retries=1)) as cluster:
        with pytest.raises(BackendUnavailable, match="HTTP 502"):
            await collect(cluster, req())
        assert sum(len(s.calls("/v1/chat/completions")) for s in servers) == 2


def test_the_breaker_opens_after_repeated_failures_and_tries_once_after_the_cooldown() -> None:
    clock = Clock()
    b = Breaker(threshold=2, cooldown=10, clock=clock)
    b.failure()
    assert b.allows()
    b.failure()
    assert b.state == "open" and not b.allows() and b.trips == 1
    clock.now += 10
    assert b.state == "half-open" and b.allows()
    b.admitted()
    assert not b.allows()  # one trial at a time
    b.failure()
    assert b.state == "open"
    clock.now += 10
    b.admitted()
    b.success()
    assert b.state == "closed" and b.allows()


async def test_an_open_circuit_sends_work_elsewhere_until_its_cooldown_ends(fakes: list[FakeServer]) -> None:
    flaky, steady = started(fakes, FakeServer()), started(fakes, FakeServer())
    flaky.behaviour.fail_status = 500
    clock = Clock()
    cfg = config(entry("flaky", "openai", flaky.url), entry("steady", "openai", steady.url), failure_threshold=2, cooldown=30)
    async with Cluster(cfg, clock=clock) as cluster:
        for _ in range(2):
            assert (await collect(cluster, req(), prefer="flaky"))[-1].served_by == "steady"
        assert cluster.members["flaky"].breaker.state == "open"
        assert (await collect(cluster, req(), prefer="flaky"))[-1].served_by == "steady"
        assert len(flaky.calls("/v1/chat/completions")) == 2
        flaky.behaviour.fail_status = None
        clock.now += 30
        assert (await collect(cluster, req(), prefer="flaky"))[-1].served_by == "flaky"
        assert cluster.members["flaky"].breaker.state == "closed"


async def test_metrics_are_prometheus_text(fakes: list[FakeServer]) -> None:
    s = started(fakes, FakeServer())
    async with Cluster(config(entry("s", "openai", s.url))) as cluster:
        await collect(cluster, req())
        text = prometheus(cluster)
    lines = text.splitlines()
    assert 'shoal_cluster_server_up{server="s",kind="openai"} 1' in lines
    assert 'shoal_cluster_requests_total{server="s",outcome="ok"} 1' in lines
    assert 'shoal_cluster_tokens_total{server="s"} 4' in lines
    assert "shoal_cluster_time_to_first_token_seconds_count 1" in lines
    names = {l.split("{")[0].split(" ")[0] for l in lines if l and not l.startswith("#")}
    helped = {l.split(" ")[2] for l in lines if l.startswith("# HELP")}
    assert {n.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") for n in names} <= helped


async def test_a_removed_server_finishes_what_it_serves_then_closes(fakes: list[FakeServer]) -> None:
    keep, leave = started(fakes, FakeServer()), started(fakes, FakeServer())
    leave.behaviour.gate = threading.Event()
    async with Cluster(config(entry("keep", "openai", keep.url), entry("leave", "openai", leave.url))) as cluster:
        member = cluster.members["leave"]
        running = asyncio.create_task(collect(cluster, req(), prefer="leave"))
        await wait_until(lambda: leave.in_flight == 1)
        cluster.apply(config(entry("keep", "openai", keep.url)))
        assert set(cluster.members) == {"keep"}
        assert [s["health"] for s in cluster.status()["servers"] if s["name"] == "leave"] == ["draining"]
        assert (await collect(cluster, req()))[-1].served_by == "keep"
        leave.behaviour.gate.set()
        assert "".join(c.text for c in await running) == " w0 w1 w2 w3"
        await wait_until(lambda: member.backend.closed)  # type: ignore[attr-defined]
        assert cluster.status()["servers"] == [s for s in cluster.status()["servers"] if s["name"] == "keep"]
