"""The in-process mesh and bounded inboxes."""

from __future__ import annotations

import asyncio

import pytest

from shoal.errors import CapacityError, NotFound
from shoal.runtime.inbox import Inbox
from shoal.runtime.mesh import InProcessMesh, subject_matches
from shoal.runtime.messages import Ack, ReplyDelta, StatusQuery, UserTurn, handler_name, parse_event


@pytest.mark.parametrize(
    "pattern, subject, ok",
    [
        ("conv.*.user", "conv.abc.user", True),
        ("conv.*.user", "conv.abc.reply", False),
        ("conv.>", "conv.abc.user", True),
        ("conv.>", "conv", False),
        ("bot.memory.control", "bot.memory.control", True),
        ("conv.*", "conv.a.b", False),
    ],
)
def test_subjects_match_like_nats(pattern: str, subject: str, ok: bool) -> None:
    assert subject_matches(pattern, subject) is ok


async def test_publish_reaches_matching_subscribers_in_order() -> None:
    mesh = InProcessMesh()
    a, b = Inbox(10, name="a"), Inbox(10, name="b")
    mesh.subscribe("conv.*.reply", a)
    mesh.subscribe("conv.x.>", b)
    for i in range(3):
        ev = ReplyDelta(conversation="x", message_id="m", text=str(i))
        await mesh.publish(ev.subject, ev)
    got = [(await a.get())[1].text for _ in range(3)]  # type: ignore[attr-defined]
    assert got == ["0", "1", "2"] and b.pending == 3


async def test_request_reply_and_unknown_subjects() -> None:
    mesh = InProcessMesh()

    async def handler(msg: StatusQuery) -> Ack:
        return Ack(detail=f"status for {msg.conversation}")

    mesh.serve("bot.t.control", handler)
    res = await mesh.request("bot.t.control", StatusQuery(conversation="c1"), timeout=1)
    assert isinstance(res, Ack) and res.detail == "status for c1"
    with pytest.raises(NotFound, match="nobody answers"):
        await mesh.request("bot.ghost.control", StatusQuery(), timeout=1)


async def test_inbox_policies_bound_the_queue_and_count_drops() -> None:
    oldest = Inbox(2, "drop_oldest")
    for i in range(5):
        oldest.put_nowait(i)
    assert oldest.pending == 2 and oldest.dropped == 3 and await oldest.get() == 3
    newest = Inbox(2, "drop_newest")
    for i in range(5):
        newest.put_nowait(i)
    assert newest.dropped == 3 and await newest.get() == 0
    fail = Inbox(1, "fail")
    fail.put_nowait(1)
    with pytest.raises(CapacityError):
        fail.put_nowait(2)
    block = Inbox(1, "block")
    await block.put(1)
    waiter = asyncio.create_task(block.put(2))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    assert await block.get() == 1
    await asyncio.wait_for(waiter, 1)
    assert await block.get() == 2


def test_events_round_trip_through_json_by_kind() -> None:
    ev = UserTurn(conversation="c", message_id="m", user_id="u", text="hi")
    back = parse_event(ev.model_dump_json())
    assert isinstance(back, UserTurn) and back == ev
    assert ev.subject == "conv.c.user"
    assert handler_name(ev) == "on_user_turn"


async def test_a_bot_queues_only_messages_it_has_a_handler_for(env) -> None:  # type: ignore[no-untyped-def]
    from shoal.bots.memory import MemoryBot
    from shoal.memory.store import MemoryStore
    from shoal.runtime.bot import BotContext
    from shoal.runtime.messages import ReplyEnd, Route
    from shoal.store.conversations import ConversationStore
    from shoal.store.db import Database

    db = await Database(env.settings.db_path).open()
    mesh = InProcessMesh()
    bot = MemoryBot(env.config.bot("memory"), BotContext(mesh, ConversationStore(db), MemoryStore(db), {}, env.config))
    bot.handles  # noqa: B018
    for sub_pattern in bot.subscribes:
        mesh.subscribe(sub_pattern, bot.inbox, bot.handles)
    # a flood of reply deltas (the memory bot handles only reply.end) must not fill its inbox
    for i in range(5 * bot.inbox.maxsize):
        ev = ReplyDelta(conversation="c", message_id="m", text=str(i))
        await mesh.publish(ev.subject, ev)
    assert bot.inbox.pending == 0
    end = ReplyEnd(conversation="c", message_id="m", text="done")
    route = Route(conversation="c", targets=["memory"])
    await mesh.publish(end.subject, end)
    await mesh.publish(route.subject, route)
    assert bot.inbox.pending == 2 and bot.inbox.dropped == 0
    await db.close()
