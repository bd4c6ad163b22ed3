"""One contract suite for both meshes: the in-process bus and NATS (a real nats-server)."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

import pytest

from shoal.errors import NotFound
from shoal.runtime.inbox import Inbox
from shoal.runtime.mesh import InProcessMesh
from shoal.runtime.mesh_config import MeshConfig
from shoal.runtime.messages import Ack, ReplyDelta, Route, StatusQuery, UserTurn
from shoal.runtime.nats_mesh import NatsMesh

from .conftest import NatsServer


@pytest.fixture(params=["inprocess", "nats"])
async def mesh(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[object]:  # type: ignore[no-untyped-def]
    if request.param == "inprocess":
        m: object = InProcessMesh()
        yield m
        await m.close()  # type: ignore[attr-defined]
        return
    server = NatsServer(tmp_path / "nats").start()
    m = await NatsMesh(MeshConfig(kind="nats", url=server.url)).start()
    try:
        yield m
    finally:
        await m.close()
        server.stop()


async def drain(inbox: Inbox, n: int, timeout: float = 5.0) -> list:  # type: ignore[type-arg]
    return [(await asyncio.wait_for(inbox.get(), timeout))[1] for _ in range(n)]


async def ready(mesh: object) -> None:
    if isinstance(mesh, NatsMesh):
        await mesh.ready()


async def test_publish_reaches_every_matching_subscriber_in_order(mesh) -> None:  # type: ignore[no-untyped-def]
    a, b, c = Inbox(10, name="a"), Inbox(10, name="b"), Inbox(10, name="c")
    mesh.subscribe("conv.*.reply", a)
    mesh.subscribe("conv.x.>", b)
    mesh.subscribe("conv.*.user", c)
    await ready(mesh)
    for i in range(3):
        ev = ReplyDelta(conversation="x", message_id="m", text=str(i))
        await mesh.publish(ev.subject, ev)
    assert [m.text for m in await drain(a, 3)] == ["0", "1", "2"]
    got = await drain(b, 3)
    assert all(isinstance(m, ReplyDelta) and m.conversation == "x" for m in got)
    await asyncio.sleep(0.05)
    assert c.pending == 0


async def test_a_subscriber_filter_keeps_unwanted_messages_out_of_its_inbox(mesh) -> None:  # type: ignore[no-untyped-def]
    inbox = Inbox(10, name="f")
    mesh.subscribe("conv.*.reply", inbox, lambda m: m.text == "keep")
    await ready(mesh)
    for text in ("drop", "keep", "drop"):
        ev = ReplyDelta(conversation="x", message_id="m", text=text)
        await mesh.publish(ev.subject, ev)
    assert [m.text for m in await drain(inbox, 1)] == ["keep"]
    await asyncio.sleep(0.05)
    assert inbox.pending == 0


async def test_request_reply_unknown_subjects_and_remote_errors(mesh) -> None:  # type: ignore[no-untyped-def]
    async def handler(msg: StatusQuery) -> Ack:
        if msg.conversation == "bad":
            raise NotFound("no conversation 'bad'", hint="list them")
        return Ack(detail=f"status for {msg.conversation}")

    mesh.serve("bot.t.control", handler)
    await ready(mesh)
    res = await mesh.request("bot.t.control", StatusQuery(conversation="c1"), timeout=2)
    assert isinstance(res, Ack) and res.detail == "status for c1"
    with pytest.raises(NotFound, match="no conversation 'bad'") as err:
        await mesh.request("bot.t.control", StatusQuery(conversation="bad"), timeout=2)
    assert err.value.hint == "list them"
    with pytest.raises(NotFound, match="nobody answers"):
        await mesh.request("bot.ghost.control", StatusQuery(), timeout=2)


async def test_a_slow_answer_times_out(mesh) -> None:  # type: ignore[no-untyped-def]
    async def slow(msg: StatusQuery) -> Ack:
        await asyncio.sleep(5)
        return Ack()

    mesh.serve("bot.slow.control", slow)
    await ready(mesh)
    with pytest.raises(asyncio.TimeoutError):
        await mesh.request("bot.slow.control", StatusQuery(), timeout=0.2)


async def test_closed_subscriptions_get_nothing_more(mesh) -> None:  # type: ignore[no-untyped-def]
    inbox = Inbox(10, name="gone")
    sub = mesh.subscribe("conv.*.reply", inbox)
    await ready(mesh)
    sub.close()
    await ready(mesh)
    ev = ReplyDelta(conversation="x", message_id="m", text="late")
    await mesh.publish(ev.subject, ev)
    await asyncio.sleep(0.1)
    assert inbox.pending == 0


# -- NATS only: several instances of one bot, durable subjects -------------------------------
@pytest.fixture
async def nats_pair(tmp_path) -> AsyncIterator[tuple[NatsMesh, NatsMesh, NatsServer]]:  # type: ignore[no-untyped-def]
    server = NatsServer(tmp_path / "nats").start()
    cfg = MeshConfig(kind="nats", url=server.url)
    a, b = await NatsMesh(cfg, name="a").start(), await NatsMesh(cfg, name="b").start()
    try:
        yield a, b, server
    finally:
        await a.close()
        await b.close()
        server.stop()


async def test_two_instances_of_a_bot_share_its_messages_and_requests_each_handled_once(nats_pair) -> None:  # type: ignore[no-untyped-def]
    a, b, _ = nats_pair
    ia, ib = Inbox(100, name="bot.thinker"), Inbox(100, name="bot.thinker")
    journal = Inbox(100, name="journal")
    a.subscribe("conv.*.route", ia)
    b.subscribe("conv.*.route", ib)
    a.subscribe("conv.>", journal)
    answered = {"a": 0, "b": 0}

    def answer(who: str):  # type: ignore[no-untyped-def]
        async def handler(msg: StatusQuery) -> Ack:
            answered[who] += 1
            return Ack(detail=who)
        return handler

    a.serve("bot.thinker.control", answer("a"))
    b.serve("bot.thinker.control", answer("b"))
    await a.ready()
    await b.ready()
    for i in range(20):
        ev = Route(conversation="c", turn=f"t{i}", targets=["thinker"], bot="primary", bot_seq=i + 1)
        await a.publish(ev.subject, ev)
    for _ in range(20):
        await a.request("bot.thinker.control", StatusQuery(), timeout=2)
    got = await drain(journal, 20)
    await asyncio.sleep(0.2)
    took_a = [ia.get_nowait()[1].turn for _ in range(ia.pending)]  # type: ignore[index]
    took_b = [ib.get_nowait()[1].turn for _ in range(ib.pending)]  # type: ignore[index]
    turns = sorted(took_a + took_b)
    # every route reached exactly one instance (the journal saw them all)
    assert turns == sorted(f"t{i}" for i in range(20)) and len(got) == 20
    assert answered["a"] + answered["b"] == 20
    assert took_a and took_b and answered["a"] and answered["b"]  # both instances took a share


async def test_a_durable_route_waits_for_a_bot_that_is_away_and_a_republish_is_kept_once(nats_pair) -> None:  # type: ignore[no-untyped-def]
    a, b, _ = nats_pair
    assert a.durable and b.durable
    await b.ensure_consumer("memory", "conv.*.route")  # the server makes it when the swarm starts
    ev = Route(conversation="c", turn="t1", targets=["memory"], bot="primary", bot_seq=7)
    await a.publish(ev.subject, ev)
    await a.publish(ev.subject, ev)  # the same event again (a retried publish): the same Nats-Msg-Id
    turn = UserTurn(conversation="c", message_id="t2", user_id="u", text="hi")
    await a.publish(turn.subject, turn)  # not a route: not for this consumer
    inbox = Inbox(10, name="bot.memory")
    b.subscribe("conv.*.route", inbox)  # the bot comes up later
    await b.ready()
    got = await drain(inbox, 1)
    await asyncio.sleep(0.3)
    assert [m.turn for m in got] == ["t1"] and inbox.pending == 0


async def test_a_nats_restart_loses_no_route_and_doubles_none(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = NatsServer(tmp_path / "nats").start()
    cfg = MeshConfig(kind="nats", url=server.url)
    a, b = await NatsMesh(cfg, name="a").start(), await NatsMesh(cfg, name="b").start()
    try:
        inbox = Inbox(100, name="bot.memory")
        b.subscribe("conv.*.route", inbox)
        await b.ready()
        for i in range(5):
            ev = Route(conversation="c", turn=f"t{i}", targets=["memory"], bot="primary", bot_seq=i + 1)
            await a.publish(ev.subject, ev)
        got = await drain(inbox, 5)
        server.stop()  # the store stays on disk, as after a crash
        server.start()
        for _ in range(100):
            if a.nc.is_connected and b.nc.is_connected:
                break
            await asyncio.sleep(0.1)
        for i in range(5, 10):
            ev = Route(conversation="c", turn=f"t{i}", targets=["memory"], bot="primary", bot_seq=i + 1)
            await a.publish(ev.subject, ev)
        got += await drain(inbox, 5, timeout=15)
        await asyncio.sleep(0.5)
        assert [m.turn for m in got] == [f"t{i}" for i in range(10)] and inbox.pending == 0
    finally:
        await a.close()
        await b.close()
        server.stop()


# -- acknowledged when handled (docs/mesh.md) ---------------------------------------------------
async def _consumer(mesh: NatsMesh, name: str):  # type: ignore[no-untyped-def]
    return await mesh.js.consumer_info(mesh.config.stream, name)


async def test_a_durable_message_is_acknowledged_when_handled_and_comes_again_if_its_process_dies(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = NatsServer(tmp_path / "nats").start()
    cfg = MeshConfig(kind="nats", url=server.url, ack_wait=2)
    a, b, c = [await NatsMesh(cfg, name=n).start() for n in "abc"]  # a publishes; b takes it and dies; c is next
    try:
        await a.ensure_consumer("thinker", "conv.*.route")
        inbox_b = Inbox(10, name="bot.thinker")
        b.subscribe("conv.*.route", inbox_b)
        await b.ready()
        ev = Route(conversation="c", turn="t1", targets=["thinker"], bot="primary", bot_seq=1)
        await a.publish(ev.subject, ev)
        _, msg, receipt = await asyncio.wait_for(inbox_b.get(), 10)
        assert msg.turn == "t1" and not receipt.redelivered
        receipt.hold()  # a thought about it runs
        receipt.release()  # the handler returned; the thought still holds the receipt
        # while it is handled (longer than ack_wait) it is reported in progress, not delivered again
        await asyncio.sleep(5)
        info = await _consumer(a, "thinker-route")
        assert info.num_ack_pending == 1 and info.num_redelivered == 0 and inbox_b.pending == 0
        # b dies (kill -9: no ack, no nak); c comes up and gets the route once ack_wait is over
        b._progress.cancel()  # type: ignore[union-attr]
        await b.nc.close()
        inbox_c = Inbox(10, name="bot.thinker")
        c.subscribe("conv.*.route", inbox_c)
        await c.ready()
        _, again, receipt_c = await asyncio.wait_for(inbox_c.get(), 20)
        assert again.turn == "t1" and receipt_c.redelivered  # the thinker looks in the store first
        receipt_c.release()  # handled: acknowledged
        for _ in range(100):
            info = await _consumer(a, "thinker-route")
            if info.num_ack_pending == 0:
                break
            await asyncio.sleep(0.1)
        assert info.num_ack_pending == 0 and c.acked == 1
        # a message handed back (its work cancelled by a shutdown) goes to another instance at once
        ev2 = Route(conversation="c", turn="t2", targets=["thinker"], bot="primary", bot_seq=2)
        await a.publish(ev2.subject, ev2)
        _, msg2, receipt2 = await asyncio.wait_for(inbox_c.get(), 10)
        receipt2.release(ok=False)
        _, msg3, receipt3 = await asyncio.wait_for(inbox_c.get(), 10)  # the NAK redelivers without ack_wait
        assert msg2.turn == msg3.turn == "t2" and receipt3.redelivered and c.nakked == 1
        receipt3.release()
    finally:
        for m in (a, c):
            await m.close()
        server.stop()
